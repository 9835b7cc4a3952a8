"""The one place wsroute reaches into trio-websocket's internals, and why.

trio-websocket answers a ping by sending a pong from its socket-reader task. When the
ping arrives after this side sent its close frame, wsproto refuses the pong
(``LocalProtocolError: ... cannot be sent in state LOCAL_CLOSING``) and the exception
kills the reader task and its nursery: trio-websocket issue #184, fix proposed in PR
#198, unreleased as of trio-websocket 0.12.2. ``WebSocket`` answers pings only while
the connection is open and reports any other send refused during a close as
``ConnectionClosed``, which every caller already handles.

When a frame breaks the protocol (text that is not UTF-8, a reserved opcode or RSV
bit, a fragmented control frame, ...), wsproto reports it as a ``CloseConnection``
event, as if the peer had closed, while the connection is still OPEN. trio-websocket
then closes the TCP connection without a close frame, so the client sees 1006 and
never learns why. RFC 6455 section 7.1.7 says the endpoint SHOULD send a close frame
with the appropriate code first (1002 protocol error, 1007 invalid data), which is
what Autobahn's cases expect; ``WebSocket`` sends it. The same event after a real
close frame from the peer arrives in state REMOTE_CLOSING or CLOSED, so OPEN is
exactly the case of a locally detected protocol error.

The rest is speed (see docs/performance.md), measured against trio-websocket's own path:

- Reading: trio-websocket puts each message on a channel that another task reads,
  and reads the socket in a task of its own. On a server, ``read_request`` and
  ``run_reader`` read in the caller's task (the connection's own: an idle
  connection has no other), and ``attach`` hands complete messages to a synchronous
  sink, which saves a task switch per message. The reader reads the socket itself
  (``_receive``: os.read on the standard library socket under trio's, trio's wait for
  readability) rather than through ``SocketStream.receive_some``, whose layers cost
  time on every read and memory in every idle connection's wait. Whole text frames
  skip wsproto while it holds nothing (``_frames``), and so does asking it for
  events after such a read, and the peer's close frame (``_closed_by_peer``).
- Writing: trio-websocket writes each message with its own ``send_all`` from a task
  that holds the connection's lock. ``write_now`` writes a frame straight to the
  socket, without waiting, when nothing else is being written and nothing is pending:
  the common case for replies and fan-out, and no task switch at all. What the kernel
  does not take at once is kept in ``_pending`` and written first by the next writer,
  which always holds the lock. ``send_batch`` writes many frames in few ``send_all``
  calls. Every write that holds the lock encodes under it (``_send`` included), so
  bytes reach the socket in the order they were framed.
- Handshake: a server's ``WSConnection`` is ``_upgrade.ServerConnection``, which reads
  the upgrade request and writes the answer without h11 (see there). Nothing more
  is read until the request is answered (a client waits for the answer too), so
  frames sent early are read once the connection is open.
- Memory: what the server no longer uses once the session takes over (``_shed``).
- Framing: data frames from a server are never masked and wsroute negotiates no
  extension, so a frame is a header and the payload; ``Prepared`` frames a message
  once for every recipient of a broadcast; the answer to the peer's close frame is
  framed by ``_frames.close_answer``. Other control frames go through wsproto.

``server_websocket`` and ``wrap_client_stream`` are trio-websocket's own
``wrap_server_stream`` and ``wrap_client_stream`` with ``WebSocket`` in place of
``WebSocketConnection`` (and for the server, the reader in the caller's task).
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import suppress
from typing import Any

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ._frames import close_answer, read_close, split_text_frames
from ._upgrade import PlainRequest, ServerConnection

#: What one read asks of the socket when trio-websocket sets no size (as trio does).
_READ_SIZE = 65536
#: What a server connection reads at a time (trio-websocket's default).
_SERVER_READ_SIZE = trio_websocket._impl.RECEIVE_BYTES
#: Pending frames are joined into writes of about this size.
_WRITE_CHUNK = 64 * 1024

#: What ``write_now`` and ``ping_now`` did with a frame.
QUEUE = 0  # nothing: queue the frame for the writer task
WRITTEN = 1  # the kernel took all of it
PENDING = 2  # framed, partly written: the writer task must flush ``_pending``

_OPEN = ConnectionState.OPEN
_PING = b"\x89\x00"  # an unmasked ping without payload


def _header(opcode: int, size: int) -> bytes:
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


class Prepared:
    """A text message framed once for any number of server connections.

    ``payload`` must be valid UTF-8 (orjson's output always is).
    """

    __slots__ = ("wire",)

    def __init__(self, payload: bytes) -> None:
        self.wire = _header(0x1, len(payload)) + payload


Frame = str | bytes | Prepared


def _server_frame(frame: Frame) -> bytes:
    if isinstance(frame, Prepared):
        return frame.wire
    if isinstance(frame, str):
        data = frame.encode()
        return _header(0x1, len(data)) + data
    return _header(0x2, len(frame)) + frame


class WebSocket(trio_websocket.WebSocketConnection):
    #: Whether this side failed the connection on a protocol error (1002, 1007).
    failed_locally = False
    #: When the last pong arrived (trio time), for wsroute's heartbeat.
    pong_at = float("-inf")
    _server = False
    # The standard library socket under a plain TCP stream (trio's wraps it: every
    # method of trio's is a Python call more, and the hot path asks for fileno()
    # several times per message).
    _sock: Any = None
    _pending = b""
    _sink: Callable[[str | bytes], None] | None = None
    _on_closed: Callable[[], None] | None = None
    _reader_done = False
    #: The reader has done its part of a close (answered the peer's close frame, or
    #: found the socket gone); what is left of it never waits.
    read_closed = False
    _reader_ended: trio.Event | None = None  # created only when waited on

    async def read_request(self) -> trio_websocket.WebSocketRequest | PlainRequest | None:
        """Read the upgrade request, in the caller's task: the server's socket reader
        until there is something to answer. A request that asks for no upgrade is a
        ``PlainRequest``, for :meth:`answer_plain`. ``None`` if there never will be
        an answer: the request was refused (and answered, e.g. 400) or the peer left
        first."""
        wsproto, stream, sock = self._wsproto, self._stream, self._sock
        data: bytes | bytearray
        while True:
            for event in wsproto.events():
                if type(event) is Request:
                    return trio_websocket.WebSocketRequest(self, event)
                if isinstance(event, PlainRequest):  # ServerHandshake's own event
                    return event
            try:
                if sock is not None:
                    data = await _receive(sock, self._receive_buffer_size)
                else:
                    data = await stream.receive_some(self._receive_buffer_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                return None
            try:
                wsproto.receive_data(bytes(data))
            except RemoteProtocolError as err:
                if err.event_hint:
                    with suppress(trio_websocket.ConnectionClosed):
                        await self._send(err.event_hint)
                await self._close_stream()
                return None

    async def answer_plain(self, answer: bytes) -> None:
        """Send the whole answer to a ``PlainRequest`` and close the connection.

        Raises:
            trio_websocket.ConnectionClosed: the peer is gone.
        """
        try:
            await self._send_framed(answer)  # raw bytes: no frame around them
        finally:
            await self._close_stream()

    # -- reading -------------------------------------------------------------------

    def attach(self, sink: Callable[[str | bytes], None], on_closed: Callable[[], None]) -> None:
        """Hand every complete message to ``sink``; call ``on_closed`` once, when the
        connection is closed for reading (a close frame, 1009, a protocol error, the
        socket gone). Before ``run_reader``: no message was read yet."""
        self._sink = sink
        self._on_closed = on_closed
        self._shed()
        if self._close_reason is not None or self._reader_done:
            self._notify_closed()

    def _shed(self) -> None:
        """Let go of wsproto's opening handshake once the connection is open (a
        shared stand-in without events takes its place), and hold wsproto's queue of
        pending events (almost always empty) in a list rather than a deque.
        ``server_websocket`` already did without trio-websocket's channel and events.
        ``get_message`` raises ``ClosedResourceError`` rather than waiting: nothing
        calls it on a server connection, whose messages go to the sink.
        """
        if not self._server or self._wsproto.connection is None:
            return
        self._wsproto.handshake = _OPENED  # type: ignore[assignment]
        connection = self._wsproto.connection
        connection._events = _EventQueue(connection._events)  # type: ignore[assignment]

    def release(self) -> None:
        """The connection is over: drop the session's callbacks (see Session._release)."""
        self._sink = self._on_closed = None

    def _notify_closed(self) -> None:
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed()

    def _reader_finished(self) -> None:
        self._reader_done = self.read_closed = True
        if self._reader_ended is not None:
            self._reader_ended.set()
        self._notify_closed()

    async def wait_reader_done(self) -> None:
        """Wait until the socket reader has ended. The reader has the last word in a
        close: it answers the peer's close frame, then closes the TCP connection, so
        cancelling it before then would cut the closing handshake."""
        if not self._reader_done:
            if self._reader_ended is None:
                self._reader_ended = trio.Event()
            await self._reader_ended.wait()

    async def _reader_task(self) -> None:
        """The client's reader (a server reads with ``run_reader``)."""
        try:
            await super()._reader_task()
        finally:
            self._reader_finished()

    async def run_reader(self) -> None:
        """The server's socket reader, from the answer to the upgrade until the
        connection is closed for reading, in the caller's task (so an idle connection
        costs no task of its own). trio-websocket's reader, with complete messages
        handed to the sink without a task switch or an await, and the event handlers
        looked up in one table for all connections rather than a dict built per
        connection (about 1 KiB each)."""
        wsproto, stream, sock = self._wsproto, self._stream, self._sock
        read_size = self._receive_buffer_size or _READ_SIZE
        drained = False  # the last read emptied the socket
        skipped = False  # the last read went all around wsproto
        event: Event | None
        handler: Callable[[WebSocket, Any], Awaitable[None]] | None
        data: bytes | bytearray | None
        try:
            # Not ``async with self._send_channel``: that would hold on to the channel
            # after _shed has let it go (closed in finally).
            while self._reader_running:
                # After a read that went all around wsproto it has no event to give,
                # and asking runs its parser's generators over an empty buffer.
                for event in () if skipped else wsproto.events():
                    kind = type(event)
                    # The common case, without an await: a message for the sink.
                    if kind is TextMessage and self._take_message(event):  # type: ignore[arg-type]
                        continue
                    handler = _HANDLERS.get(kind)
                    if handler is None:
                        continue  # wsproto gives an open connection no others
                    try:
                        await handler(self, event)
                    except trio_websocket.ConnectionClosed:
                        self._reader_running = False
                        break
                if not self._reader_running:
                    break  # e.g. after 1009: read no more, and say so now
                if (
                    not skipped
                    and self._sink is not None
                    and self._message_size + announced_rest(wsproto) > self._max_message_size
                ):
                    # The frame being read announces more than the limit allows: say
                    # so now (1009), not once that much has come, or never.
                    with suppress(trio_websocket.ConnectionClosed):
                        await self._refuse_oversized()
                    break
                # An idle connection waits below for as long as it lives: keep nothing
                # alive meanwhile (the last event was the upgrade request, headers and
                # all; the last data its bytes).
                event = handler = data = None
                try:
                    if sock is not None:
                        data = await _receive(sock, read_size, drained)
                        drained = len(data) < read_size
                    else:
                        data = await stream.receive_some(self._receive_buffer_size)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._abort_web_socket()
                    break
                if not data:
                    if wsproto.state is not ConnectionState.CLOSED:
                        await self._abort_web_socket()
                    break
                if self._sink is not None and (
                    (skipped and self._close_reason is None) or self._wsproto_idle()
                ):
                    # Whole text messages first, without wsproto (see _frames).
                    messages, used = split_text_frames(data, self._max_message_size)
                    if used:
                        sink = self._sink
                        for message in messages:
                            sink(message)
                        if used == len(data):
                            skipped = True  # so wsproto is as idle as it was
                            continue
                        data = data[used:]
                    closing = read_close(data) if wsproto.state is _OPEN else None
                    if closing is not None:
                        # The peer's close frame, the last it sends: skip wsproto too.
                        with suppress(trio_websocket.ConnectionClosed):
                            await self._closed_by_peer(*closing)
                        break
                skipped = False
                if wsproto.state is not ConnectionState.CLOSED:
                    try:
                        wsproto.receive_data(data)  # type: ignore[arg-type]
                    except RemoteProtocolError as err:
                        if err.event_hint:
                            await self._send(err.event_hint)
                        await self._close_stream()
        finally:
            self._send_channel.close()
            self._reader_finished()

    async def _closed_by_peer(self, code: int, reason: str) -> None:
        """What wsproto and trio-websocket's _handle_close_connection_event do with
        the peer's close frame (read by ``_frames.read_close``), without wsproto: the
        same answer, framed by ``close_answer``; then the server closes the TCP
        connection first (RFC 6455 section 7.1.1)."""
        # As wsproto once it has read the frame and framed the answer: nothing may be
        # sent after that answer, and it is committed.
        self._wsproto.connection._state = ConnectionState.CLOSED  # type: ignore[union-attr]
        self._close_reason = trio_websocket.CloseReason(code, reason or None)
        await self._send_framed(close_answer(code, reason))
        await self._close_web_socket(code, reason or None)
        self._close_handshake.set()
        await self._close_stream()

    def _wsproto_idle(self) -> bool:
        connection = self._wsproto.connection
        return connection is not None and not self._message_parts and wsproto_idle(connection)

    async def _close_web_socket(self, code: int, reason: str | None = None) -> None:
        if self._server:
            # trio-websocket's, less closing the message channel: a server's is the
            # shared closed one, and closing it would only cost a checkpoint.
            self._close_reason = trio_websocket.CloseReason(code, reason)
        else:
            await super()._close_web_socket(code, reason)
        # trio-websocket calls this once the close frames it owes are sent: after
        # answering the peer's close frame, or when the socket is gone.
        self.read_closed = True
        self._notify_closed()

    async def _close_stream(self) -> None:
        if self._sock is None:
            await super()._close_stream()
            return
        # SocketStream.aclose, without its checkpoint: closing a socket never waits.
        # As trio's socket closes: tell trio first, so a task waiting on it wakes.
        self._reader_running = False
        sock = self._sock
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    def _take_message(self, event: TextMessage | BytesMessage) -> bool:
        """Hand the message ``event`` completes to the sink; False when more is
        needed: no sink (a client), a fragment to keep, or over the size limit."""
        sink = self._sink
        if (
            sink is None
            or not event.message_finished
            or self._message_size + _size(event.data) > self._max_message_size
        ):
            return False
        message: str | bytes = bytes(event.data) if isinstance(event, BytesMessage) else event.data
        parts: list[Any] = self._message_parts
        if parts:
            parts.append(message)
            message = "".join(parts) if isinstance(message, str) else b"".join(parts)
            self._message_parts = []
            self._message_size = 0
        sink(message)
        return True

    async def _handle_message_event(self, event: TextMessage | BytesMessage) -> None:
        if self._take_message(event):
            return
        if self._sink is None:
            await super()._handle_message_event(event)  # a client's: to its channel
            return
        # trio-websocket's, but counting the bytes of a text message (it counts its
        # characters), as the fast path (_frames) and the 1009's reason do.
        data = event.data
        self._message_size += _size(data)
        if self._message_size <= self._max_message_size:
            # A fragment: the rest is to come.
            self._message_parts.append(bytes(data) if isinstance(data, bytearray) else data)
            return
        await self._refuse_oversized()

    async def _refuse_oversized(self) -> None:
        """Close with 1009 and read no more; the caller then drops the connection."""
        reason = f"Exceeded maximum message size: {self._max_message_size} bytes"
        self._message_size = 0
        self._message_parts = []
        self._close_reason = trio_websocket.CloseReason(1009, reason)
        self._reader_running = False  # read no more
        try:
            await self._send(CloseConnection(code=1009, reason=reason))
        finally:
            self._notify_closed()

    async def _handle_ping_event(self, event: Ping) -> None:
        if self._wsproto.state is _OPEN:
            await super()._handle_ping_event(event)

    async def _handle_pong_event(self, event: Pong) -> None:
        self.pong_at = trio.current_time()
        if self._pings:
            await super()._handle_pong_event(event)

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is _OPEN:
            # wsproto failed the connection on a frame it could not parse: tell the
            # peer why. If it is already gone, closing below still records the code.
            self.failed_locally = True
            with suppress(trio_websocket.ConnectionClosed):
                await self._send(CloseConnection(code=event.code, reason=event.reason))
        await super()._handle_close_connection_event(event)

    # -- writing -------------------------------------------------------------------

    async def abandon(self, code: int, reason: str) -> None:
        """Send the close frame and close the connection without waiting for the
        peer's answer: for a peer judged dead (no pong), which would never give one.
        What the 1009 case does, so that ``on_disconnect`` runs now rather than
        after ``close_timeout``."""
        if self._sock is not None:
            self._close_now(code, reason)
            return
        # Another stream (in memory, say): send as usual; the caller bounds the wait.
        if self._close_reason is None and self._wsproto.state is _OPEN:
            self._close_reason = trio_websocket.CloseReason(code, reason)
            with suppress(trio_websocket.ConnectionClosed):
                await self._send(CloseConnection(code=code, reason=reason))
        await self._close_stream()

    def _close_now(self, code: int, reason: str) -> None:
        """``abandon`` on a socket, without waiting: the close frame goes only if the
        kernel takes it at once (not if the writer task is in the middle of a
        frame: the peer is not reading anyway)."""
        if self._close_reason is not None:
            return
        if self._wsproto.state is _OPEN:
            frame = self._frame(CloseConnection(code=code, reason=reason))
            if not self._stream_lock.locked():
                # After the rest of a frame the kernel took only in part.
                sock, pending, self._pending = self._sock, self._pending, b""
                if sock.fileno() >= 0:
                    self._write_nowait(sock, pending + frame)
        self._close_reason = trio_websocket.CloseReason(code, reason)
        self._reader_running = False
        sock = self._sock
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    def _free_socket(self) -> Any:
        """The socket, if a frame may be written to it right now: a plain TCP socket,
        no task writing, no bytes pending (which must go first); else ``None``."""
        if self._pending or self._stream_lock.locked():
            return None
        return self._sock

    def write_now(self, frame: Frame) -> int:
        """Write ``frame`` at once if the connection is idle; see QUEUE and friends.

        Synchronous: nothing else can frame or write in between.
        """
        sock = self._free_socket()
        if sock is None or self._wsproto.state is not _OPEN:
            return QUEUE
        return self._write_nowait(sock, _server_frame(frame))

    def ping_now(self) -> int:
        """Send a ping without waiting; QUEUE means the connection is not open."""
        if self._wsproto.state is not _OPEN or not self._server:
            return QUEUE
        sock = self._free_socket()
        if sock is None:
            # A control frame may go between any two frames: the next write takes it.
            self._pending += _PING
            return PENDING
        return self._write_nowait(sock, _PING)

    def _write_nowait(self, sock: Any, data: bytes) -> int:
        fd = sock.fileno()
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

    async def send_batch(self, frames: list[Frame]) -> None:
        """Send what is pending, then ``frames`` in order, in few socket writes
        (server side: frames are not masked).

        Raises:
            trio_websocket.ConnectionClosed: the connection is closed or closing.
        """
        if self._close_reason:
            raise trio_websocket.ConnectionClosed(self._close_reason)
        async with self._stream_lock:
            chunk: list[bytes] = []
            size = 0
            for frame in frames:
                if self._wsproto.state is not _OPEN:
                    raise trio_websocket.ConnectionClosed(self._closing_reason())
                data = _server_frame(frame)
                chunk.append(data)
                size += len(data)
                if size >= _WRITE_CHUNK:
                    await self._send_all(b"".join(chunk))
                    chunk, size = [], 0
            if chunk or self._pending:
                await self._send_all(b"".join(chunk))

    async def _send_all(self, data: bytes) -> None:
        """Write ``pending + data``; the caller holds the stream lock."""
        if self._pending:
            data = self._pending + data
            self._pending = b""
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self._abort_web_socket()
            assert self._close_reason is not None
            raise trio_websocket.ConnectionClosed(self._close_reason) from None

    async def _send(self, event: Event) -> None:
        # trio-websocket frames before taking the lock; framing under it keeps the
        # order of frames that write_now and the writer task put on the wire.
        if self._free_socket() is not None:
            # Nobody is writing: frame and write at once, as write_now does (the
            # handshake's answer, pongs, close frames).
            await self._send_framed(self._frame(event))
            return
        async with self._stream_lock:
            await self._send_all(self._frame(event))

    async def _send_framed(self, data: bytes) -> None:
        """Write the frame ``data``: at once if nobody is writing, else in turn."""
        sock = self._free_socket()
        if sock is not None:
            done = self._write_nowait(sock, data)
            if done == WRITTEN:
                return
            async with self._stream_lock:
                # The rest (now in _pending), or all of it on a broken socket, which
                # then raises ConnectionClosed as usual.
                await self._send_all(b"" if done == PENDING else data)
            return
        async with self._stream_lock:
            await self._send_all(data)

    def _frame(self, event: Event) -> bytes:
        try:
            return self._wsproto.send(event)
        except LocalProtocolError:
            if self._wsproto.state is _OPEN:
                raise  # not the closing race: a real bug, keep it loud
            raise trio_websocket.ConnectionClosed(self._closing_reason()) from None

    def _closing_reason(self) -> trio_websocket.CloseReason:
        return self._close_reason or trio_websocket.CloseReason(1006, "connection closing")


def _size(data: str | bytes | bytearray) -> int:
    """A message part's size in bytes: UTF-8 for text (ASCII text is one byte a
    character, which ``isascii`` knows without looking)."""
    if isinstance(data, str) and not data.isascii():
        return len(data.encode())
    return len(data)


def wsproto_idle(connection: Connection) -> bool:
    """``connection`` is open and holds no unparsed bytes, no event and no part of a
    message, so the next bytes may skip it (wsproto's internals, checked against
    wsproto itself by tests/test_frames.py)."""
    if connection.state is not _OPEN or connection._events:
        return False
    proto = connection._proto
    decoder = proto._frame_decoder
    return (
        decoder.header is None
        and not decoder.buffer.buffer
        and proto._message_decoder.opcode is None
    )


def announced_rest(connection: WSConnection) -> int:
    """How many payload bytes of the data frame wsproto is reading are still to come,
    as its header announced them (0 between frames). wsproto hands a data frame's
    payload over as it arrives but waits for the rest without a limit, so a header
    announcing 2^62 bytes would hold the connection until the heartbeat ends it.
    (wsproto's internals, as ``wsproto_idle``; the owned wire layer will read it
    from its own frame header.)"""
    inner = connection.connection
    if inner is None:
        return 0
    decoder = inner._proto._frame_decoder
    header = decoder.header
    if header is None or header.opcode.iscontrol():
        return 0
    return int(header.payload_len - decoder.payload_consumed)


async def _receive(sock: Any, size: int | None, drained: bool = False) -> bytes:
    """``SocketStream.receive_some`` without its layers (a conflict detector, an error
    translating context manager, the socket wrapper's method): a read from the
    non-blocking socket, waiting for readability only when there is nothing to read.
    The same checkpoints as trio's; about 1 KiB less held by every idle connection's
    wait, and less work per read. ``drained``: the last read took less than it
    could, so the socket is most likely empty: wait for readability before trying
    (a request-reply client sends nothing until answered, and a read that finds
    nothing costs a system call and an exception).

    Raises:
        trio.ClosedResourceError: the socket was closed (here or by another task).
        trio.BrokenResourceError: the connection is broken (reset, ...).
    """
    size = size or _READ_SIZE
    if drained:
        if sock.fileno() < 0:
            raise trio.ClosedResourceError("the socket was closed")
    else:
        await trio.lowlevel.checkpoint_if_cancelled()
        data = _read_nowait(sock, size)
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
    while True:
        await trio.lowlevel.wait_readable(sock.fileno())
        data = _read_nowait(sock, size)
        if data is not None:
            return data


def _read_nowait(sock: Any, size: int) -> bytes | None:
    """Up to ``size`` bytes, or ``None`` if none have arrived (see _receive)."""
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket error: {exc}") from exc


def server_websocket(stream: trio.abc.Stream, *, max_message_size: int) -> WebSocket:
    """The server side of a WebSocket on ``stream``: :meth:`WebSocket.read_request`,
    answer it, :meth:`WebSocket.attach` a sink, then :meth:`WebSocket.run_reader`.

    What ``WebSocketConnection.__init__`` sets up, without what a server connection
    never uses: the message channel (messages go to the sink, attached before the
    reader reads any), the future for the upgrade request (``read_request`` returns
    it), and two events that are only ever set. Shared stand-ins keep trio-websocket's
    own code working (see ``_shared``); tests/test_websocket.py checks that the
    attributes are the same as trio-websocket's own.
    """
    send, receive, done = _shared()
    ws = WebSocket.__new__(WebSocket)
    ws._close_reason = None
    ws._id = next(trio_websocket.WebSocketConnection.CONNECTION_ID)
    ws._stream = stream
    ws._stream_lock = trio.StrictFIFOLock()
    ws._wsproto = ServerConnection()
    ws._message_size = 0
    ws._message_parts = []
    ws._max_message_size = max_message_size
    ws._receive_buffer_size = _SERVER_READ_SIZE
    ws._reader_running = True
    ws._initial_request = None
    ws._path = None
    ws._subprotocol = None
    ws._handshake_headers = ()
    ws._reject_status = 0
    ws._reject_headers = ()
    ws._reject_body = b""
    ws._send_channel, ws._recv_channel = send, receive
    ws._pings = OrderedDict()
    ws._connection_proposal = None
    ws._open_handshake = ws._for_testing_peer_closed_connection = done
    ws._close_handshake = trio.Event()
    ws._server = True
    if isinstance(stream, trio.SocketStream):
        ws._sock = stream.socket._sock  # type: ignore[attr-defined]
    return ws


def _shared() -> _Shared:
    """Stand-ins shared by every server connection: a closed channel pair (closing it
    again does nothing; sending to it raises what trio-websocket already catches) and
    an event already set (setting it again does nothing)."""
    global _SHARED
    if _SHARED is None:
        send, receive = trio.open_memory_channel[Any](0)
        send.close()
        receive.close()
        done = trio.Event()
        done.set()
        _SHARED = (send, receive, done)
    return _SHARED


class _Opened:
    """Stands in for wsproto's handshake once the connection is open (see _shed):
    ``WSConnection`` still asks it for events, and it has none."""

    __slots__ = ()

    def events(self) -> Iterator[Event]:
        return iter(())


_OPENED = _Opened()


class _EventQueue(list[Event]):
    """wsproto's queue of pending events as a list: an empty deque costs about 600
    bytes, an empty list 56. wsproto only appends to it (a close on EOF) and pops
    from the left."""

    __slots__ = ()

    def popleft(self) -> Event:
        return self.pop(0)


_Shared = tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any], trio.Event]
_SHARED: _Shared | None = None


# What an open server connection's events can be: the handshake's are read by
# read_request, before run_reader starts.
_HANDLERS: dict[type[Event], Callable[[WebSocket, Any], Awaitable[None]]] = {
    BytesMessage: WebSocket._handle_message_event,
    CloseConnection: WebSocket._handle_close_connection_event,
    Ping: WebSocket._handle_ping_event,
    Pong: WebSocket._handle_pong_event,
    TextMessage: WebSocket._handle_message_event,
}


def failed_locally(ws: trio_websocket.WebSocketConnection) -> bool:
    """Whether wsroute's side failed ``ws`` on a protocol error (see WebSocket)."""
    return bool(getattr(ws, "failed_locally", False))


async def wrap_client_stream(
    nursery: trio.Nursery,
    stream: Any,
    host: str,
    resource: str,
    *,
    subprotocols: Iterable[str] = (),
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    max_message_size: int = 2**31,
) -> trio_websocket.WebSocketConnection:
    """Open the client side of a WebSocket on ``stream`` (used by wsroute.testing)."""
    connection = WebSocket(
        stream,
        WSConnection(ConnectionType.CLIENT),
        host=host,
        path=resource,
        client_subprotocols=list(subprotocols),
        client_extra_headers=extra_headers or [],
        max_message_size=max_message_size,
    )
    nursery.start_soon(connection._reader_task)
    await connection._open_handshake.wait()
    return connection
