"""One server connection's bytes: the socket, the sans-IO protocol between them.

The transport reads the opening handshake (``read_request``), answers it, then
reads frames in the connection's own task (``run_reader``), so an idle connection
costs no task of its own: complete messages go to a synchronous sink, without a
task switch or an await. Everything protocol is ``wsroute._wire``'s; this module
only moves bytes, through trio's public API.

Writes come from anywhere and never interleave: ``write_now`` writes a frame at
once, without waiting, when nothing is being written and nothing is pending (the
common case for replies and fan-out: no task switch at all); what the kernel does
not take at once is kept and written first by the next writer, which always holds
the lock. ``send_batch`` writes many frames in few system calls.

On POSIX the reader and ``write_now`` use the socket's file descriptor directly
(``os.read``/``os.write`` on ``socket.fileno()``, with trio's ``wait_readable`` for
back-pressure): ``SocketStream.receive_some`` and ``send_all`` cost several Python
layers per call, on the hot path of every message (see docs/performance.md). On
other systems (Windows cannot ``os.read`` a socket) and for other streams (TLS, the
test kit's memory streams) the portable path goes through the stream's own
``receive_some``/``send_all``; the choice is made once per connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Final, NamedTuple

import trio

from .._wire.deflate import Codec
from .._wire.frames import ABNORMAL, Outgoing, server_frame
from .._wire.framing import Encoding, framer
from .._wire.handshake import PlainRequest, Refusal, RequestReader, UpgradeRequest, accept, refuse
from .._wire.protocol import Close, Event, Failure, Pong, Protocol, State

#: What one read asks of the socket.
READ_SIZE: Final = 65536
#: Pending frames are joined into writes of about this size.
_WRITE_CHUNK: Final = 64 * 1024
#: Whether file descriptors of sockets can be read and written with os.read/os.write.
_FD_IO: Final = os.name == "posix"

#: What ``write_now`` and ``ping_now`` did with a frame.
QUEUE: Final = 0  # nothing: queue the frame for the writer task
WRITTEN: Final = 1  # the kernel took all of it
PENDING: Final = 2  # framed, partly written: the writer task must flush the rest

_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED
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


class Transport:
    """A server connection's socket I/O, from the upgrade request to the last byte.

    Use: :meth:`read_request`, :meth:`accept` (or :meth:`refuse`, or
    :meth:`answer_plain`), :meth:`attach` a sink, then :meth:`run_reader`.
    """

    __slots__ = (
        "_fd",
        "_fileno",
        "_frame",
        "_lock",
        "_max",
        "_on_closed",
        "_pending",
        "_protocol",
        "_reader_done",
        "_reader_ended",
        "_rest",
        "_sink",
        "_sock",
        "_stream",
        "closed",
        "pong_at",
        "read_closed",
    )

    def __init__(self, stream: trio.abc.Stream, *, max_message_size: int) -> None:
        self._stream = stream
        self._max = max_message_size
        # The socket, for the fd path and for closing without a checkpoint; under
        # TLS, the one below it, for closing only.
        self._sock: trio.socket.SocketType | None = None
        if isinstance(stream, trio.SocketStream):
            self._sock = stream.socket
        elif isinstance(stream, trio.SSLStream) and isinstance(
            stream.transport_stream, trio.SocketStream
        ):
            self._sock = stream.transport_stream.socket
        self._fd = _FD_IO and isinstance(stream, trio.SocketStream)
        # The descriptor, read once (trio's fileno() is a Python call more on every
        # read and write); -1 once this transport closed the socket.
        self._fileno = self._sock.fileno() if self._fd and self._sock is not None else -1
        self._lock = trio.StrictFIFOLock()
        self._pending = b""  # framed bytes the kernel has not taken yet
        self._protocol: Protocol | None = None
        # How an outgoing message is framed: as is, or by the connection's codec.
        self._frame: Callable[[Outgoing], bytes] = server_frame
        self._rest = b""  # bytes that came with the upgrade request
        self._sink: Callable[[str | bytes], None] | None = None
        self._on_closed: Callable[[], None] | None = None
        self._reader_done = False
        self._reader_ended: trio.Event | None = None  # created only when waited on
        #: How the connection closed, once it is closing or closed.
        self.closed: CloseRecord | None = None
        #: When the last pong arrived (trio time), for the heartbeat.
        self.pong_at = float("-inf")
        #: The reader has done its part of a close (answered the peer's close frame,
        #: or found the socket gone): what is left of it never waits.
        self.read_closed = False

    @property
    def failed_locally(self) -> bool:
        """Whether this side failed the connection (1002, 1007, 1009)."""
        return self._protocol is not None and self._protocol.failed

    # -- the opening handshake ---------------------------------------------------------

    async def read_request(self) -> UpgradeRequest | PlainRequest | None:
        """Read the request, in the caller's task. ``None`` if there will never be
        one to answer: it was refused (and answered, 400 or 426) or the peer left.
        Nothing more is read until it is answered (a client waits for the answer)."""
        reader = RequestReader()
        while True:
            try:
                data = await self._receive(False)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                return None
            try:
                request = reader.feed(data)
            except Refusal as refusal:
                with suppress(TransportClosed):
                    await self._send_bytes(refuse(refusal.status, refusal.headers))
                self.close_socket()
                return None
            if request is not None:
                self._rest = reader.rest
                return request

    async def accept(
        self,
        request: UpgradeRequest,
        subprotocol: str | None,
        codec: Codec | None = None,
        encoding: Encoding | None = None,
    ) -> None:
        """Answer 101: the connection is open, compressed by ``codec`` if given, its
        messages sent in ``encoding`` (JSON text if None).

        Raises:
            TransportClosed: the peer left meanwhile.
        """
        self._protocol = Protocol(max_message_size=self._max, codec=codec)
        self._frame = framer(encoding, codec)
        await self._send_bytes(
            accept(
                request,
                subprotocol=subprotocol,
                extensions=codec.header if codec is not None else None,
            )
        )

    async def refuse(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Answer ``status`` and close: the upgrade is refused."""
        await self.answer_plain(refuse(status, headers, body))

    async def answer_plain(self, answer: bytes) -> None:
        """Send a whole HTTP answer and close the connection."""
        try:
            with suppress(TransportClosed):
                await self._send_bytes(answer)
        finally:
            await self.close_stream()

    # -- reading ---------------------------------------------------------------------

    def attach(self, sink: Callable[[str | bytes], None], on_closed: Callable[[], None]) -> None:
        """Hand every complete message to ``sink``; call ``on_closed`` once, when the
        connection is closed for reading (a close frame, a failure, the socket
        gone). Before ``run_reader``: no message was read yet."""
        self._sink = sink
        self._on_closed = on_closed
        if self._reader_done:
            self._notify_closed()

    def release(self) -> None:
        """The connection is over: drop the session's callbacks (see Session._release)."""
        self._sink = self._on_closed = None

    def _notify_closed(self) -> None:
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed()

    async def run_reader(self) -> None:
        """Read frames until the connection is closed for reading, in the caller's
        task; then close the socket (a server closes TCP first, RFC 6455 section
        7.1.1)."""
        protocol = self._protocol
        assert protocol is not None, "accept() first"
        data = self._rest
        self._rest = b""
        drained = False  # the last read emptied the socket
        try:
            while True:
                if data:
                    control = False
                    sink = self._sink
                    for event in protocol.receive_data(data):
                        # Messages, the common case, straight to the session.
                        if type(event) is str or type(event) is bytes:
                            if sink is not None:
                                sink(event)
                        else:
                            control = True
                            self._control(event)
                    # Only control frames and failures make the protocol owe an answer.
                    if control:
                        out = protocol.data_to_send()
                        if out:
                            with suppress(TransportClosed):
                                await self._send_bytes(out)
                        if protocol.state is _CLOSED:
                            break
                    # An idle connection waits below for as long as it lives: keep
                    # nothing alive meanwhile.
                    data = b""
                try:
                    data = await self._receive(drained)
                    drained = len(data) < READ_SIZE
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    for event in protocol.receive_eof():
                        self._control(event)
                    break
        finally:
            self.close_socket()
            self._reader_finished()

    def _control(self, event: Event) -> None:
        """A control event: a pong (for the heartbeat), or the end (how it closed)."""
        if type(event) is Pong:
            self.pong_at = trio.current_time()
        elif (type(event) is Close or type(event) is Failure) and self.closed is None:
            self.closed = CloseRecord(event.code, event.reason)

    def _reader_finished(self) -> None:
        self._reader_done = self.read_closed = True
        if self.closed is None:
            self.closed = CloseRecord(ABNORMAL, "")
        if self._reader_ended is not None:
            self._reader_ended.set()
        self._notify_closed()

    async def wait_reader_done(self) -> None:
        """Wait until the reader has ended. The reader has the last word in a close:
        it reads the peer's close frame, then closes the TCP connection, so cancelling
        it before then would cut the closing handshake."""
        if not self._reader_done:
            if self._reader_ended is None:
                self._reader_ended = trio.Event()
            await self._reader_ended.wait()

    async def _receive(self, drained: bool) -> bytes:
        if self._fd:
            return await _read_fd(self._fileno, drained)
        return bytes(await self._stream.receive_some(READ_SIZE))

    # -- closing ---------------------------------------------------------------------

    async def aclose(self, code: int, reason: str) -> None:
        """Send this side's close frame, unless one was sent or received already; the
        reader then reads until the peer's. Never raises: a socket that is gone is
        the reader's to report."""
        protocol = self._protocol
        if protocol is None or protocol.state is not _OPEN:
            return
        frame = protocol.send_close(code, reason)
        self.closed = CloseRecord(code, reason)
        with suppress(TransportClosed):
            await self._send_bytes(frame)

    async def abandon(self, code: int, reason: str) -> None:
        """Send the close frame and close the connection without waiting for the
        peer's answer: for a peer judged dead (no pong), which would never give one,
        so that ``on_disconnect`` runs now rather than after ``close_timeout``. On
        the fd path the frame goes only if the kernel takes it at once."""
        protocol = self._protocol
        if protocol is not None and protocol.state is _OPEN:
            frame = protocol.send_close(code, reason)
            self.closed = CloseRecord(code, reason)
            if self._fd:
                if not self._lock.locked():
                    self._write_nowait(self._pending + frame)
                    self._pending = b""
            else:
                with suppress(TransportClosed):
                    await self._send_bytes(frame)
        await self.close_stream()

    def close_socket(self) -> None:
        """Close a TCP socket now (it never waits); other streams close in
        :meth:`close_stream`."""
        self._fileno = -1
        if self._sock is not None:
            self._sock.close()  # wakes any task waiting on it

    async def close_stream(self) -> None:
        if self._sock is not None:
            self.close_socket()
        else:
            await trio.aclose_forcefully(self._stream)

    # -- writing ---------------------------------------------------------------------

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


async def _read_fd(fd: int, drained: bool) -> bytes:
    """``SocketStream.receive_some`` without its layers: a read from the
    non-blocking socket ``fd``, waiting for readability only when there is nothing to
    read. The same checkpoints as trio's. ``drained``: the last read took less than
    it could, so the socket is most likely empty: wait for readability before
    trying (a request-reply client sends nothing until answered, and a read that
    finds nothing costs a system call and an exception).

    Raises:
        trio.ClosedResourceError: the socket was closed (``fd`` is -1, or trio woke
            the wait because another task closed it).
        trio.BrokenResourceError: the connection is broken (reset, ...).
    """
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    if not drained:
        await trio.lowlevel.checkpoint_if_cancelled()
        data = _read_nowait(fd)
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
    while True:
        await trio.lowlevel.wait_readable(fd)
        data = _read_nowait(fd)
        if data is not None:
            return data


def _read_nowait(fd: int) -> bytes | None:
    """Up to READ_SIZE bytes, or ``None`` if none have arrived."""
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket error: {exc}") from exc
