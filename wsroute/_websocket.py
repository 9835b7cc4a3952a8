"""The one place wsroute reaches into trio-websocket's internals, and why.

trio-websocket answers a ping by sending a pong from its socket-reader task. When the
ping arrives after this side sent its close frame, wsproto refuses the pong
(``LocalProtocolError: ... cannot be sent in state LOCAL_CLOSING``) and the exception
kills the reader task and its nursery: trio-websocket issue #184, fix proposed in PR
#198, unreleased as of trio-websocket 0.12.2. With wsroute's heartbeat pinging every
connection, that race happens in practice. ``_Connection`` answers pings only while
the connection is open and reports any other send refused during a close as
``ConnectionClosed``, which every caller already handles.

When a frame breaks the protocol (text that is not UTF-8, a reserved opcode or RSV
bit, a fragmented control frame, ...), wsproto reports it as a ``CloseConnection``
event, as if the peer had closed, while the connection is still OPEN. trio-websocket
then closes the TCP connection without a close frame, so the client sees 1006 and
never learns why. RFC 6455 section 7.1.7 says the endpoint SHOULD send a close frame
with the appropriate code first (1002 protocol error, 1007 invalid data), which is
what Autobahn's cases expect; ``_Connection`` sends it. The same event after a real
close frame from the peer arrives in state REMOTE_CLOSING or CLOSED, so OPEN is
exactly the case of a locally detected protocol error.

Writing: trio-websocket writes each message with its own ``send_all``. A connection's
writer usually has many frames pending (a fan-out, a burst of replies), so
``send_batch`` encodes them all with wsproto and writes them in as few ``send_all``
calls as possible (chunks of up to ``_WRITE_CHUNK`` bytes), under the same lock and
with the same error handling as trio-websocket's ``_send``.

The two ``wrap_*`` functions are trio-websocket's own ``wrap_server_stream`` and
``wrap_client_stream`` with ``_Connection`` in place of ``WebSocketConnection``.
Delete this module once a fixed trio-websocket is required.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

#: Pending frames are joined into writes of about this size.
_WRITE_CHUNK = 64 * 1024


class UpgradeFailed(Exception):
    """The client's upgrade request was refused by the protocol layer (wsproto already
    answered it, e.g. 400 or 426), or the connection closed before it was complete."""


class _Connection(trio_websocket.WebSocketConnection):
    #: Whether this side failed the connection on a protocol error (1002, 1007).
    failed_locally = False

    async def _handle_ping_event(self, event: Ping) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            await super()._handle_ping_event(event)

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            # wsproto failed the connection on a frame it could not parse: tell the
            # peer why. If it is already gone, closing below still records the code.
            self.failed_locally = True
            with suppress(trio_websocket.ConnectionClosed):
                await self._send(CloseConnection(code=event.code, reason=event.reason))
        await super()._handle_close_connection_event(event)

    async def send_batch(self, frames: list[str | bytes]) -> None:
        """Send ``frames`` in order (text for str, binary for bytes), few writes.

        Raises:
            trio_websocket.ConnectionClosed: the connection is closed or closing.
        """
        if self._close_reason:
            raise trio_websocket.ConnectionClosed(self._close_reason)
        encode = self._wsproto.send
        chunk: list[bytes] = []
        size = 0
        try:
            for frame in frames:
                event = (
                    TextMessage(data=frame) if isinstance(frame, str) else BytesMessage(data=frame)
                )
                data = encode(event)
                chunk.append(data)
                size += len(data)
                if size >= _WRITE_CHUNK:
                    await self._write(b"".join(chunk))
                    chunk, size = [], 0
        except LocalProtocolError:
            reason = self._close_reason or trio_websocket.CloseReason(1006, "connection closing")
            raise trio_websocket.ConnectionClosed(reason) from None
        if chunk:
            await self._write(b"".join(chunk))

    async def _write(self, data: bytes) -> None:
        async with self._stream_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._abort_web_socket()
                assert self._close_reason is not None
                raise trio_websocket.ConnectionClosed(self._close_reason) from None

    async def _send(self, event: Event) -> None:
        try:
            await super()._send(event)
        except LocalProtocolError:
            if self._wsproto.state is ConnectionState.OPEN:
                raise  # not the closing race: a real bug, keep it loud
            reason = self._close_reason or trio_websocket.CloseReason(1006, "connection closing")
            raise trio_websocket.ConnectionClosed(reason) from None


async def wrap_server_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    *,
    message_queue_size: int,
    max_message_size: int,
) -> trio_websocket.WebSocketRequest:
    """Start the server side of a WebSocket on ``stream``; return its upgrade request."""
    connection = _Connection(
        stream,
        WSConnection(ConnectionType.SERVER),
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
    )
    reader_done = trio.Event()

    async def read() -> None:
        try:
            await connection._reader_task()
        finally:
            reader_done.set()

    nursery.start_soon(read)
    # trio-websocket waits for the request forever even after wsproto refused it and
    # its reader ended: race the two so a bad request ends at once.
    request: trio_websocket.WebSocketRequest | None = None
    async with trio.open_nursery() as race:

        async def get_request() -> None:
            nonlocal request
            request = await connection._get_request()
            race.cancel_scope.cancel()

        async def reader_ended() -> None:
            await reader_done.wait()
            race.cancel_scope.cancel()

        race.start_soon(get_request)
        race.start_soon(reader_ended)
    if request is None:
        raise UpgradeFailed("not a valid WebSocket upgrade request, or closed before one")
    return request


async def send_batch(ws: trio_websocket.WebSocketConnection, frames: list[str | bytes]) -> None:
    """Send ``frames`` on ``ws`` with as few socket writes as possible."""
    if isinstance(ws, _Connection):
        await ws.send_batch(frames)
    else:  # a plain trio-websocket connection: one write per frame
        for frame in frames:
            await ws.send_message(frame)


def failed_locally(ws: trio_websocket.WebSocketConnection) -> bool:
    """Whether wsroute's side failed ``ws`` on a protocol error (see _Connection)."""
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
    connection = _Connection(
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
