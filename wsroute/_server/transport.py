"""One server connection's bytes: the socket, the sans-IO protocol between them.

The transport reads the opening handshake (``read_request``), answers it, then
reads frames in the connection's own task (``run_reader``), so an idle connection
costs no task of its own: complete messages go to a synchronous sink, without a
task switch or an await. Everything protocol is ``wsroute._wire``'s; this module
only moves bytes, through trio's public API.

Writing is the :class:`~wsroute._server.writer.Writer` mixin's: frames go out at once
when the socket is idle, else in turn, never interleaved.

On POSIX the reader and ``write_now`` use the socket's file descriptor directly
(``os.read`` in ``fdread``, ``os.write`` in ``writer``, on ``socket.fileno()``, with
trio's ``wait_readable`` for back-pressure): ``SocketStream.receive_some`` and
``send_all`` cost several Python layers per call, on the hot path of every message
(see docs/performance.md). On other systems (Windows cannot ``os.read`` a socket)
and for other streams (TLS, the test kit's memory streams) the portable path goes
through the stream's own ``receive_some``/``send_all``; the choice is made once per
connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Final

import trio

from .._wire.deflate import Codec
from .._wire.events import Close, Event, Failure, Pong, State
from .._wire.frames import ABNORMAL, Outgoing, server_frame
from .._wire.framing import Encoding, framer
from .._wire.handshake import PlainRequest, Refusal, RequestReader, UpgradeRequest, accept, refuse
from .._wire.protocol import Protocol
from .fdread import READ_SIZE, read_fd
from .writer import CloseRecord, TransportClosed, Writer

#: Whether file descriptors of sockets can be read and written with os.read/os.write.
_FD_IO: Final = os.name == "posix"

_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED


class Transport(Writer):
    """A server connection's socket I/O, from the upgrade request to the last byte.

    Use: :meth:`read_request`, :meth:`accept` (or :meth:`refuse`, or
    :meth:`answer_plain`), :meth:`attach` a sink, then :meth:`run_reader`.
    """

    __slots__ = (  # besides Writer's
        "_fd",
        "_fileno",
        "_frame",
        "_max",
        "_on_closed",
        "_protocol",
        "_reader_done",
        "_reader_ended",
        "_rest",
        "_sink",
        "_sock",
        "_stream",
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

    async def read_request(self) -> UpgradeRequest | PlainRequest | Refusal | None:
        """Read the request, in the caller's task: the request, or the
        :class:`Refusal` it got (answered already, and the socket closed), or ``None``
        if the peer left before sending one. Nothing more is read until it is answered
        (a client waits for the answer)."""
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
                    await self._send_bytes(refuse(refusal.status, refusal.headers, refusal.body))
                self.close_socket()
                return refusal
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
            return await read_fd(self._fileno, drained)
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
