"""The writing half of a server connection's transport: frames to the socket, in order.

Writes come from anywhere and never interleave: ``write_now`` writes a frame at
once, without waiting, when nothing is being written and nothing is pending (the
common case for replies and fan-out: no task switch at all); what the kernel does
not take at once is kept and written first by the next writer, which always holds
the lock. ``send_batch`` writes many frames in few system calls.

:class:`Writer` is a mixin of :class:`~wsroute._server.transport.Transport` rather
than an object of its own, so that a connection's bytes stay one object, with no
indirection on the hot path of every message; ``Transport.__init__`` sets the state
it uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple

import trio

from .._wire.events import State
from .._wire.frames import ABNORMAL, Outgoing
from .._wire.protocol import Protocol

#: Pending frames are joined into writes of about this size.
_WRITE_CHUNK: Final = 64 * 1024

#: What ``write_now`` and ``ping_now`` did with a frame.
QUEUE: Final = 0  # nothing: queue the frame for the writer task
WRITTEN: Final = 1  # the kernel took all of it
PENDING: Final = 2  # framed, partly written: the writer task must flush the rest

_OPEN: Final = State.OPEN
_PING: Final = b"\x89\x00"  # an unmasked ping without payload


class CloseRecord(NamedTuple):
    """How the connection closed, or is closing: a close frame's code and reason
    (sent or received), or 1006 when the socket went without one."""

    code: int
    reason: str


class TransportClosed(Exception):
    """The connection is closed or closing: no more frames can be sent."""

    def __init__(self, record: CloseRecord | None) -> None:
        super().__init__(record)
        self.record = record or CloseRecord(ABNORMAL, "")


class Writer:
    """Frames to the socket: at once when it is idle, else in turn under the lock."""

    # What writing changes (Transport.__init__ sets them, and the rest below).
    __slots__ = ("_lock", "_pending", "closed")

    # Set by Transport.__init__; listed here for the type checker.
    _fd: bool
    _fileno: int
    _frame: Callable[[Outgoing], bytes]
    _lock: trio.StrictFIFOLock
    _pending: bytes
    _protocol: Protocol | None
    _stream: trio.abc.Stream
    closed: CloseRecord | None

    if TYPE_CHECKING:

        def close_socket(self) -> None: ...

    def _free(self) -> bool:
        """Whether a frame may be written to the socket right now: fd path, no task
        writing, no bytes pending (which must go first)."""
        return self._fd and not self._pending and not self._lock.locked()

    def write_now(self, frame: Outgoing) -> int:
        """Write ``frame`` at once if the connection is idle; see QUEUE and friends.

        Synchronous: nothing else can frame or write in between.
        """
        protocol = self._protocol
        if not self._free() or protocol is None or protocol.state is not _OPEN:
            return QUEUE
        return self._write_nowait(self._frame(frame))

    def ping_now(self) -> int:
        """Send a ping without waiting; QUEUE means the connection is not open."""
        protocol = self._protocol
        if protocol is None or protocol.state is not _OPEN:
            return QUEUE
        if not self._free():
            # A control frame may go between any two frames: the next write takes it.
            self._pending += _PING
            return PENDING
        return self._write_nowait(_PING)

    def _write_nowait(self, data: bytes) -> int:
        fd = self._fileno
        if fd < 0:
            return QUEUE
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Broken: nothing was written and framing keeps no state, so let the
            # writer task meet the error the usual way.
            return QUEUE
        if sent == len(data):
            return WRITTEN
        self._pending = data[sent:]
        return PENDING

    async def send_batch(self, frames: list[Outgoing]) -> None:
        """Send what is pending, then ``frames`` in order, in few writes.

        Raises:
            TransportClosed: the connection is closed or closing.
        """
        protocol = self._protocol
        async with self._lock:
            chunk: list[bytes] = []
            size = 0
            for frame in frames:
                if protocol is None or protocol.state is not _OPEN:
                    raise TransportClosed(self.closed)
                data = self._frame(frame)
                chunk.append(data)
                size += len(data)
                if size >= _WRITE_CHUNK:
                    await self._send_all(b"".join(chunk))
                    chunk, size = [], 0
            if chunk or self._pending:
                await self._send_all(b"".join(chunk))

    async def _send_all(self, data: bytes) -> None:
        """Write ``pending + data``; the caller holds the lock."""
        if self._pending:
            data = self._pending + data
            self._pending = b""
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self.closed is None:
                self.closed = CloseRecord(ABNORMAL, "")
            self.close_socket()
            raise TransportClosed(self.closed) from None

    async def _send_bytes(self, data: bytes) -> None:
        """Write ``data`` (an answer, control frames): at once if nobody is writing,
        else in turn."""
        if self._free():
            done = self._write_nowait(data)
            if done == WRITTEN:
                return
            async with self._lock:
                # The rest (now pending), or all of it on a broken socket, which then
                # raises TransportClosed as usual.
                await self._send_all(b"" if done == PENDING else data)
            return
        async with self._lock:
            await self._send_all(data)
