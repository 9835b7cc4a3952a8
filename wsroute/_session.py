"""The lifetime of one accepted connection.

One nursery per connection holds its writer, its intake (a reader plus
``max_concurrency`` workers) and whatever the app starts with ``conn.start_soon``;
nothing outlives it. The reader never waits for a handler: it decodes each frame and
queues it (bounded; a full queue answers ``overloaded``), so pings and close frames
keep being read while handlers run.

Ending, whoever starts it, goes one way: the first reason is recorded on the
connection, then

1. server-initiated and graceful: stop reading, let queued and running handlers
   finish, flush the outbox (all within the grace deadline);
2. send the close frame (within ``close_timeout``; the writer's current frame is
   never cut, because trio-websocket serialises writes);
3. cancel the nursery, leave every topic, and run ``on_disconnect`` hooks once,
   shielded, each under ``hook_timeout``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import trio
import trio_websocket

from ._addressing import Control, conn_topic, user_topic
from ._errors import BrokerError, ProtocolError
from ._limits import Verdict, Window
from ._protocol import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNSUPPORTED_DATA,
    INTERNAL_ERROR,
    OVERLOADED,
    RATE_LIMITED,
    ClientMessage,
    decode,
    encode_error,
    encode_protocol_error,
)
from ._websocket import failed_locally, send_batch

if TYPE_CHECKING:
    from ._connection import Connection
    from ._routing import FrameHandler
    from ._runtime import Runtime

logger = logging.getLogger("wsroute")


class RawFrame(NamedTuple):
    """A frame for the app's frame handler, unparsed."""

    frame: str | bytes


# An intake item: a decoded request, an error reply already encoded, a raw frame, or
# an info message from elsewhere in the system.
_Item = ClientMessage | str | RawFrame | Control


class Session:
    __slots__ = (
        "_connect_scope",
        "_deadline",
        "_intake_done",
        "_intake_scope",
        "_reader_scope",
        "_receive",
        "_send",
        "_writer_done",
        "conn",
        "rt",
        "ws",
    )

    def __init__(
        self, rt: Runtime, ws: trio_websocket.WebSocketConnection, conn: Connection
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.conn = conn
        self._reader_scope = trio.CancelScope()
        self._intake_scope = trio.CancelScope()
        self._intake_done = trio.Event()
        self._writer_done = trio.Event()
        self._deadline: float | None = None
        self._connect_scope = trio.CancelScope()
        # Requests and info messages share one queue, so an info handler runs in
        # order with the connection's requests, like a message in its mailbox.
        self._send, self._receive = trio.open_memory_channel[_Item](rt.config.max_queued_requests)
        conn._info_sink = self._queue_info

    def _queue_info(self, control: Control) -> bool:
        try:
            self._send.send_nowait(control)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def begin_close(self, code: int, reason: str, deadline: float) -> None:
        """Close gracefully, letting handlers finish until ``deadline`` (shutdown)."""
        if self._deadline is None:
            self._deadline = deadline
        self.conn._request_close(code, reason, "server")

    def abort(self) -> None:
        """Close at once with 1001 (the server is being torn down); idempotent."""
        self.conn._request_close(CLOSE_GOING_AWAY, "server shutting down", "server", graceful=False)
        self._connect_scope.cancel()

    async def run(self) -> None:
        conn = self.conn
        began = False
        try:
            async with trio.open_nursery() as nursery:
                conn._nursery = nursery
                nursery.start_soon(self._writer)
                began = True
                connected = False
                with self._connect_scope:
                    connected = await self._connect()
                if connected:
                    nursery.start_soon(self._intake)
                    if self.rt.config.ping_interval is not None:
                        nursery.start_soon(self._heartbeat)
                else:
                    self._intake_done.set()
                await conn._closing.wait()
                await self._wind_down()
                await self._close_socket()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._finish(began)

    async def _connect(self) -> bool:
        conn, rt = self.conn, self.rt
        try:
            await conn.subscribe(conn_topic(conn.id))
            if conn.user_id is not None:
                await conn.subscribe(user_topic(conn.user_id))
            if rt.config.default_topic is not None:
                await conn.subscribe(rt.config.default_topic)
        except BrokerError as exc:
            # Without its topics the connection would be deaf: let the client retry.
            logger.warning("connection %s: cannot subscribe its topics: %s", conn.id, exc)
            conn._request_close(CLOSE_TRY_AGAIN_LATER, "broker unavailable", "server")
            return False
        try:
            for hook in rt.on_connect:
                if conn.closing:
                    break
                await hook(conn)
        except Exception:
            logger.exception("on_connect hook failed for connection %s", conn.id)
            conn._request_close(CLOSE_INTERNAL_ERROR, "internal error", "server")
        return not conn.closing

    async def _intake(self) -> None:
        send, receive = self._send, self._receive
        try:
            with self._intake_scope:
                async with trio.open_nursery() as nursery:
                    for _ in range(self.rt.config.max_concurrency):
                        nursery.start_soon(self._worker, receive.clone())
                    receive.close()
                    await self._reader(send)
        finally:
            self._intake_done.set()

    async def _reader(self, send: trio.MemorySendChannel[_Item]) -> None:
        conn, ws = self.conn, self.ws
        raw = self.rt.frame_handler is not None
        limit = self.rt.config.rate_limit
        window = Window(*limit) if limit is not None else None
        with self._reader_scope, send:
            while True:
                try:
                    message = await ws.get_message()
                except trio_websocket.ConnectionClosed as exc:
                    code = exc.reason.code if exc.reason else CLOSE_ABNORMAL
                    reason = (exc.reason.reason if exc.reason else None) or ""
                    # trio-websocket closes with 1009 on an oversized message, and our
                    # _websocket layer with 1002/1007 on a frame that breaks RFC 6455.
                    if code == CLOSE_MESSAGE_TOO_BIG or failed_locally(ws):
                        conn._request_close(code, reason, "server", graceful=False)
                    else:
                        conn._request_close(code, reason, "client", graceful=False)
                    return
                item: _Item
                if raw:
                    item = RawFrame(message)
                elif isinstance(message, bytes):
                    conn._request_close(
                        CLOSE_UNSUPPORTED_DATA, "binary frames are not supported", "server"
                    )
                    return
                else:
                    try:
                        item = decode(message)
                    except ProtocolError as exc:
                        conn._note_invalid()
                        item = encode_protocol_error(exc)
                if window is not None:
                    verdict = window.hit(trio.current_time())
                    # A frame handler's protocol has no error replies: close instead.
                    if verdict is Verdict.ABUSIVE or (raw and verdict is Verdict.LIMITED):
                        conn._request_close(CLOSE_POLICY_VIOLATION, "rate limit exceeded", "server")
                        return
                    if verdict is Verdict.LIMITED:
                        assert not isinstance(item, RawFrame)
                        conn._push(_refusal(item, RATE_LIMITED, _RATE_LIMITED_MESSAGE))
                        continue
                try:
                    send.send_nowait(item)
                except trio.WouldBlock:
                    if isinstance(item, RawFrame):
                        conn._request_close(CLOSE_TRY_AGAIN_LATER, "overloaded", "server")
                        return
                    conn._push(_refusal(item, OVERLOADED, _OVERLOADED_MESSAGE))

    async def _worker(self, receive: trio.MemoryReceiveChannel[_Item]) -> None:
        conn, dispatcher, frames = self.conn, self.rt.dispatcher, self.rt.frame_handler
        async with receive:
            async for item in receive:
                frame: str | bytes | None
                if isinstance(item, str):
                    frame = item
                elif isinstance(item, RawFrame):
                    assert frames is not None
                    frame = await _handle_frame(frames, item.frame, conn)
                elif isinstance(item, Control):
                    await dispatcher.dispatch_info(conn, item)
                    continue
                else:
                    try:
                        frame = await dispatcher.dispatch(conn, item)
                    except Exception:
                        # dispatch() is the error boundary; this is the net below it.
                        logger.exception("wsroute bug while dispatching %r", item.type)
                        frame = encode_error(item.type, item.id, INTERNAL_ERROR, "internal error")
                if frame is not None:
                    conn._push(frame)

    async def _heartbeat(self) -> None:
        """Ping every ping_interval; a client that does not answer is closed with 1011.

        Catches clients that vanished without a close (a dead TCP peer sends nothing).
        """
        config = self.rt.config
        assert config.ping_interval is not None
        while True:
            await trio.sleep(config.ping_interval)
            with trio.move_on_after(config.ping_timeout) as waiting:
                try:
                    await self.ws.ping()
                except trio_websocket.ConnectionClosed:
                    return
            if waiting.cancelled_caught:
                logger.info("connection %s: no pong within %g s", self.conn.id, config.ping_timeout)
                self.conn._request_close(
                    CLOSE_INTERNAL_ERROR, "ping timeout", "server", graceful=False
                )
                return

    async def _writer(self) -> None:
        conn, ws = self.conn, self.ws
        outbox = conn._outbox
        try:
            while batch := await outbox.get_batch():
                await send_batch(ws, batch)
        except trio_websocket.ConnectionClosed as exc:
            outbox.discard()
            code = exc.reason.code if exc.reason else CLOSE_ABNORMAL
            conn._request_close(code, "", "client", graceful=False)
        finally:
            self._writer_done.set()

    async def _wind_down(self) -> None:
        conn = self.conn
        disconnect = conn._disconnect
        assert disconnect is not None
        if conn._graceful and disconnect.initiator == "server":
            deadline = self._deadline
            if deadline is None:
                deadline = trio.current_time() + self.rt.config.close_timeout
            with trio.move_on_at(deadline):
                self._reader_scope.cancel()
                await self._intake_done.wait()
                conn._outbox.close()
                await self._writer_done.wait()
        self._intake_scope.cancel()
        conn._outbox.discard()

    async def _close_socket(self) -> None:
        disconnect = self.conn._disconnect
        code, reason = CLOSE_GOING_AWAY, "server shutting down"
        if disconnect is not None and disconnect.initiator == "server":
            code, reason = disconnect.code, disconnect.reason
        with trio.move_on_after(self.rt.config.close_timeout):
            await self.ws.aclose(code, reason)

    async def _finish(self, began: bool) -> None:
        """Runs shielded: the connection is over, whatever ended it."""
        conn, rt = self.conn, self.rt
        conn._request_close(CLOSE_GOING_AWAY, "server shutting down", "server", graceful=False)
        conn._outbox.discard()
        await rt.hub.leave(conn)
        await self._close_socket()  # no-op unless we were cancelled from outside
        if not began:
            return
        disconnect = conn._disconnect
        assert disconnect is not None
        for hook in rt.on_disconnect:
            with trio.move_on_after(rt.config.hook_timeout) as scope:
                try:
                    await hook(conn, disconnect)
                except Exception:
                    logger.exception("on_disconnect hook failed for connection %s", conn.id)
            if scope.cancelled_caught:
                logger.warning(
                    "on_disconnect hook %s timed out for connection %s",
                    getattr(hook.fn, "__qualname__", hook.fn),
                    conn.id,
                )


_OVERLOADED_MESSAGE = "too many requests are waiting on this connection; slow down and retry"
_RATE_LIMITED_MESSAGE = "too many messages; slow down"


def _refusal(item: ClientMessage | str, code: str, message: str) -> str:
    """The error reply for a message that will not be handled."""
    if isinstance(item, str):
        return item  # already an error reply: send it anyway, it is small
    return encode_error(item.type, item.id, code, message)


async def _handle_frame(
    handler: FrameHandler, frame: str | bytes, conn: Connection
) -> str | bytes | None:
    """Run the frame handler; it has no error replies, so failures close with 1011."""
    try:
        result = await handler(frame, conn)
    except Exception:
        logger.exception("frame handler failed on connection %s", conn.id)
        conn._request_close(CLOSE_INTERNAL_ERROR, "internal error", "server")
        return None
    if result is not None and not isinstance(result, str | bytes):
        logger.error("frame handler returned %s, not str, bytes or None", type(result).__name__)
        conn._request_close(CLOSE_INTERNAL_ERROR, "internal error", "server")
        return None
    return result
