"""The lifetime of one accepted connection.

A connection's tasks all run in one nursery, the stream's (see ``_runtime``): its
writer, its workers, its closing task and whatever the app starts with
``conn.start_soon``; nothing outlives it. Tasks start only when needed, so an idle
connection costs no task at all besides the stream's own, which runs ``on_connect``
and then reads the socket; a closing task starts when something asks the
connection to close. The socket is not read while ``on_connect`` runs (the kernel
buffers what arrives); each hook runs under ``hook_timeout``, and one that overruns
closes the connection with 1011. The reader hands each complete message
to ``_on_message``, which decodes it and queues it for the workers (bounded; a full
queue answers ``overloaded``) without ever waiting, so pings and close frames keep
being read while handlers run. Up to ``max_concurrency`` workers run handlers.

Ending, whoever starts it, goes one way: the first reason is recorded on the
connection, then

1. server-initiated and graceful: stop reading, let queued and running handlers
   finish, flush the outbox (all within the grace deadline);
2. send the close frame (within ``close_timeout``; the writer's current frame is
   never cut, because writes are serialised);
3. cancel the nursery; once it has ended, leave every topic and run
   ``on_disconnect`` hooks once, shielded, each under ``hook_timeout``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple, Protocol

import trio

from .._errors import BrokerError, ProtocolError
from .._msgpack import SUBPROTOCOL as MSGPACK
from .._msgpack import decode as decode_msgpack
from .._protocol import (
    INTERNAL_ERROR,
    OVERLOADED,
    RATE_LIMITED,
    ClientMessage,
    decode,
)
from .._wire import closes
from .._wire.frames import Prepared
from .addressing import Control, conn_topic, user_topic
from .connection import log_fields
from .limits import Verdict, Window
from .transport import PENDING, QUEUE, TransportClosed

if TYPE_CHECKING:
    from .._config import Config
    from .._routing import FrameHandler, Hook
    from .connection import Connection
    from .dispatch import Dispatcher
    from .heartbeat import Handle, Heartbeat
    from .hub import Hub
    from .instruments import Instruments
    from .transport import Transport

logger = logging.getLogger("wsroute")


class Context(Protocol):
    """What a session needs of the serving it belongs to (``runtime.Runtime`` is
    one): the app's options, its handlers and hooks, the hub, the heartbeat."""

    config: Config
    dispatcher: Dispatcher
    instruments: Instruments
    hub: Hub
    heartbeat: Heartbeat | None
    frame_handler: FrameHandler | None
    on_connect: tuple[Hook, ...]
    on_disconnect: tuple[Hook, ...]


class RawFrame(NamedTuple):
    """A frame for the app's frame handler, unparsed."""

    frame: str | bytes


# An intake item: a decoded request, an error reply already encoded, a raw frame, or
# an info message from elsewhere in the system.
_Item = ClientMessage | Prepared | RawFrame | Control


class Session:
    __slots__ = (
        "_abandon",
        "_aborted",
        "_beat",
        "_began",
        "_connect_scope",
        "_deadline",
        "_idle",
        "_intake_closed",
        "_intake_finished",
        "_live",
        "_msgpack",
        "_ping_sent",
        "_progress",
        "_queue",
        "_raw",
        "_started",
        "_taken",
        "_window",
        "_worker_scopes",
        "_workers",
        "_writer_finished",
        "conn",
        "rt",
        "ws",
    )

    def __init__(self, rt: Context, ws: Transport, conn: Connection) -> None:
        self.rt = rt
        self.ws = ws
        self.conn = conn
        # Requests and info messages share one queue, so an info handler runs in
        # order with the connection's requests, like a message in its mailbox.
        self._queue: list[_Item] = []  # at most max_queued_requests long
        # Idle workers, and the running workers' scopes: created with the first worker
        # (most idle connections never get one).
        # Each idle worker waits on an Event of its own: the cheapest of trio's ways
        # to wait (a ParkingLot costs about 4% of a request).
        self._idle: list[trio.Event] | None = None
        self._workers = 0
        self._taken = 0  # items the workers took off the queue, all told
        self._worker_scopes: list[trio.CancelScope] | None = None  # a few at most
        self._started = False  # on_connect done: workers may start
        self._began = False  # start() got as far as the outbox: on_disconnect runs
        self._live = False  # connected and no closing task yet
        self._intake_closed = False
        # For the graceful wind-down: every worker ended, the writer drained.
        self._intake_finished = False
        self._writer_finished = False
        self._progress: trio.Event | None = None
        self._deadline: float | None = None
        self._connect_scope: trio.CancelScope | None = None  # while on_connect runs
        self._aborted = False
        self._abandon = False  # close without waiting for the peer's answer
        self._ping_sent: float | None = None
        self._beat: Handle | None = None
        self._raw = rt.frame_handler is not None
        # Messages in binary frames (wsroute.v1.msgpack), not in text frames.
        self._msgpack = conn.subprotocol == MSGPACK and not self._raw
        limit = rt.config.rate_limit
        self._window = Window(*limit) if limit is not None else None
        conn._info_sink = self._enqueue
        conn._on_closing = self._closing_requested

    def begin_close(self, code: int, reason: str, deadline: float) -> None:
        """Close gracefully, letting handlers finish until ``deadline`` (shutdown)."""
        if self._deadline is None:
            self._deadline = deadline
        self.conn._request_close(code, reason, "server")

    def abort(self) -> None:
        """Close at once with 1001 (the server is being torn down); idempotent."""
        self.conn._request_close(*closes.SHUTTING_DOWN, "server", graceful=False)
        self._aborted = True
        if self._connect_scope is not None:
            self._connect_scope.cancel()

    async def subscribe(self) -> bool:
        """Join the connection's own topics (its id's, its user's, the default one);
        before the 101, under the handshake's deadline. False if the broker refused:
        without its topics the connection would be deaf, so ``start`` closes it (1013)
        and the client retries."""
        conn, rt = self.conn, self.rt
        topics = [conn_topic(conn.id)]
        if conn.user_id is not None:
            topics.append(user_topic(conn.user_id))
        if rt.config.default_topic is not None:
            topics.append(rt.config.default_topic)
        try:
            await rt.hub.join(conn, topics)
        except BrokerError as exc:
            logger.warning(
                "connection %s: cannot subscribe its topics: %s",
                conn.id,
                exc,
                extra=log_fields(conn),
            )
            return False
        return True

    async def start(self, nursery: trio.Nursery, subscribed: bool = True) -> None:
        """Once the 101 is sent: run ``on_connect`` and attach the connection to its
        socket, its tasks to ``nursery``; return once connected, or closing (the rest
        runs in tasks started when needed). The caller then runs the socket reader,
        and once ``nursery`` has ended, calls :meth:`finish`. ``subscribed``: what
        :meth:`subscribe` said."""
        conn, ws = self.conn, self.ws
        conn._nursery = nursery
        conn._outbox.attach(ws.write_now, self._start_writer)
        self._began = True
        if not subscribed:
            conn._request_close(*closes.BROKER_UNAVAILABLE, "server")
        if self.rt.on_connect:
            connected = False
            with trio.CancelScope() as self._connect_scope:
                if self._aborted:
                    self._connect_scope.cancel()
                connected = await self._connect()
            self._connect_scope = None
        else:
            connected = not conn.closing  # without hooks, nothing is left to do
        if connected:
            self._started = True
            if self._queue:
                self._spawn_worker()
            if self.rt.heartbeat is not None:
                self._beat = self.rt.heartbeat.watch(self)
        else:
            self._close_intake()  # what the client sends now is not read
        # Before the caller reads the socket (run_reader), so every message, and the
        # end of reading, reaches the session.
        ws.attach(self._on_message, self._reader_ended)
        self._live = True  # from now on, _closing_requested starts _close
        if conn.closing:
            self._closing_requested()

    def _closing_requested(self) -> None:
        """Called by the connection when the first reason to close is recorded."""
        if self._live:
            self._live = False
            conn = self.conn
            nursery = conn._nursery
            assert nursery is not None
            if conn._graceful or not self.ws.read_closed:
                nursery.start_soon(self._close)
                return
            # The peer closed, or the socket is gone, and the reader has sent all it
            # owed: what _close would do, without a task (most connections end so).
            self._drop_work()
            if nursery.child_tasks:
                # The app's tasks. Not the reader: it has done its part and ends by
                # itself, and a cancel costs trio a repr of the task, for its reason.
                nursery.cancel_scope.cancel()

    async def _close(self) -> None:
        await self._wind_down()
        await self._close_socket()
        nursery = self.conn._nursery
        assert nursery is not None
        nursery.cancel_scope.cancel()  # the app's tasks, and the socket reader

    async def finish(self) -> None:
        """The connection is over, whatever ended it: leave its topics and run its
        ``on_disconnect`` hooks. The caller shields it, unless nothing here can wait
        (``Runtime._end_may_wait``: keep the two in step)."""
        self._live = False
        self.conn._outbox.detach()
        try:
            await self._finish(self._began)
        finally:
            self._release()

    def _release(self) -> None:
        """Break the links between the connection's objects (each holds the others'
        callbacks), so that reference counting frees them at once rather than the
        cyclic garbage collector later: some 60 objects a connection, and churn runs
        about 8% more cycles a second. Whatever still holds ``conn`` finds it closed:
        it takes no frames, tasks or info messages."""
        conn = self.conn
        conn._info_sink = conn._on_closing = None
        conn._outbox.release()
        self.ws.release()

    async def _connect(self) -> bool:
        conn, rt = self.conn, self.rt
        try:
            for hook in rt.on_connect:
                if conn.closing:
                    break
                with trio.move_on_after(rt.config.hook_timeout) as scope:
                    await hook(conn)
                if scope.cancelled_caught:
                    # A connection stuck in set-up would hold its slot and read nothing.
                    logger.warning(
                        "on_connect hook %s timed out for connection %s; closing it",
                        _hook_name(hook),
                        conn.id,
                        extra=log_fields(conn),
                    )
                    conn._request_close(*closes.INTERNAL, "server")
        except Exception:
            logger.exception(
                "on_connect hook failed for connection %s", conn.id, extra=log_fields(conn)
            )
            conn._request_close(*closes.INTERNAL, "server")
        return not conn.closing

    # -- intake: called by the socket reader, never waits ----------------------------

    def _on_message(self, message: str | bytes) -> None:
        if self._intake_closed:
            return  # closing: what the client sends now is not read
        conn = self.conn
        item: _Item
        if self._raw:
            item = RawFrame(message)
        elif isinstance(message, bytes) is not self._msgpack:
            wrong = closes.TEXT_UNSUPPORTED if self._msgpack else closes.BINARY_UNSUPPORTED
            conn._request_close(*wrong, "server")
            self._close_intake()
            return
        else:
            try:
                # The kind of frame matches the subprotocol (checked above).
                item = decode_msgpack(message) if isinstance(message, bytes) else decode(message)
            except ProtocolError as exc:
                conn._note_invalid()
                item = self.rt.dispatcher.invalid(exc)
        window = self._window
        if window is not None:
            verdict = window.hit(trio.current_time())
            # A frame handler's protocol has no error replies: close instead.
            if verdict is Verdict.ABUSIVE or (self._raw and verdict is Verdict.LIMITED):
                conn._request_close(*closes.RATE_LIMIT_EXCEEDED, "server")
                self._close_intake()
                return
            if verdict is Verdict.LIMITED:
                assert not isinstance(item, RawFrame)
                conn._push(self._refusal(item, RATE_LIMITED, _RATE_LIMITED_MESSAGE))
                return
        if not self._enqueue(item):
            if isinstance(item, RawFrame):
                conn._request_close(*closes.OVERLOADED, "server")
                self._close_intake()
                return
            conn._push(self._refusal(item, OVERLOADED, _OVERLOADED_MESSAGE))

    def _refusal(self, item: ClientMessage | Prepared, code: str, message: str) -> Prepared:
        """The error reply for a message that will not be handled."""
        if isinstance(item, Prepared):
            return item  # already an error reply: send it anyway, it is small
        return self.rt.dispatcher.refuse(item, code, message)

    def _reader_ended(self) -> None:
        """The socket reader stopped: the peer closed or vanished, or this side failed
        the connection (an oversized message, 1009; a frame that breaks RFC 6455,
        1002 or 1007)."""
        ws = self.ws
        record = ws.closed
        code = record.code if record else closes.ABNORMAL
        text = record.reason if record else ""
        if ws.failed_locally:
            self.conn._request_close(code, text, "server", graceful=False)
        else:
            self.conn._request_close(code, text, "client", graceful=False)
        self._close_intake()

    def _enqueue(self, item: _Item) -> bool:
        """Queue ``item`` for a worker; False when the queue is full or closed."""
        queue = self._queue
        if self._intake_closed or len(queue) >= self.rt.config.max_queued_requests:
            return False
        queue.append(item)
        if self._idle:  # None or empty: no idle worker
            self._idle.pop().set()
        elif self._started and self._workers < self.rt.config.max_concurrency:
            self._spawn_worker()
        return True

    def _close_intake(self) -> None:
        """Take no more items; workers finish what is queued, then end."""
        self._intake_closed = True
        idle = self._idle
        while idle:
            idle.pop().set()
        if not self._workers:
            self._finished_intake()

    def _finished_intake(self) -> None:
        self._intake_finished = True
        self._made_progress()

    def _made_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def _wait_progress(self) -> None:
        if self._progress is None:
            self._progress = trio.Event()
        await self._progress.wait()

    def _spawn_worker(self) -> None:
        nursery = self.conn._nursery
        assert nursery is not None
        if self._idle is None:
            self._idle = []
            self._worker_scopes = []
        self._workers += 1
        nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        conn, dispatcher, frames = self.conn, self.rt.dispatcher, self.rt.frame_handler
        queue, idle, scopes = self._queue, self._idle, self._worker_scopes
        assert idle is not None and scopes is not None
        scope = trio.CancelScope()
        scopes.append(scope)
        try:
            with scope:
                while True:
                    while not queue:
                        # After a connection's first request, its worker ends rather
                        # than wait: many connections ask once (a join, a fetch) and
                        # then only listen, and a waiting worker costs about 2.5 KiB.
                        # One that asked twice will likely ask again.
                        if self._intake_closed or self._taken < 2:
                            return
                        wakeup = trio.Event()
                        idle.append(wakeup)
                        try:
                            await wakeup.wait()
                        finally:
                            if not wakeup.is_set():  # cancelled while idle
                                idle.remove(wakeup)
                    item = queue.pop(0)
                    self._taken += 1
                    frame: str | bytes | Prepared | None
                    if isinstance(item, Prepared):
                        frame = item  # an error reply, made by the intake
                    elif isinstance(item, RawFrame):
                        assert frames is not None
                        dispatcher.frames.untimed.value += 1
                        frame = await _handle_frame(frames, item.frame, conn)
                    elif isinstance(item, Control):
                        await dispatcher.dispatch_info(conn, item)
                        continue
                    else:
                        try:
                            frame = await dispatcher.dispatch(conn, item)
                        except Exception:
                            # dispatch() is the error boundary; this is the net below it.
                            logger.exception(
                                "wsroute bug while dispatching %r",
                                item.type,
                                extra=log_fields(conn),
                            )
                            frame = dispatcher.error_reply(
                                item.type, item.id, INTERNAL_ERROR, "internal error"
                            )
                    if frame is not None:
                        conn._push(frame)
        finally:
            scopes.remove(scope)
            self._workers -= 1
            if not self._workers and self._intake_closed:
                self._finished_intake()

    def _drop_work(self) -> None:
        """Not graceful: cancel running handlers, drop queued requests and frames."""
        self._stop_intake()
        self.conn._outbox.discard()

    def _stop_intake(self) -> None:
        """Cancel running handlers and drop queued items (not graceful)."""
        self._close_intake()
        self._queue.clear()
        for scope in self._worker_scopes or ():
            scope.cancel()

    # -- heartbeat (driven by the runtime's Heartbeat) ---------------------------------

    def heartbeat(self, now: float) -> float | None:
        """Ping, or check the last ping was answered; return when to come back, or
        ``None`` to stop (the connection is closing)."""
        conn, config = self.conn, self.rt.config
        if conn.closing:
            return None
        assert config.ping_interval is not None
        sent = self._ping_sent
        if sent is not None:
            pong = self.ws.pong_at
            if pong < sent:
                logger.info(
                    "connection %s: no pong within %g s",
                    conn.id,
                    config.ping_timeout,
                    extra=log_fields(conn),
                )
                self.rt.instruments.ping_timeouts.value += 1
                # The peer is judged dead: it will not answer the close frame either.
                self._abandon = True
                conn._request_close(*closes.PING_TIMEOUT, "server", graceful=False)
                return None
            self._ping_sent = None
            return max(now, pong + config.ping_interval)
        done = self.ws.ping_now()
        if done == QUEUE:
            return None  # no longer open: the reader will report why
        if done == PENDING:
            conn._outbox.request_flush()
        self._ping_sent = now
        return now + config.ping_timeout

    # -- writing and ending ---------------------------------------------------------

    def _start_writer(self) -> None:
        nursery = self.conn._nursery
        assert nursery is not None
        nursery.start_soon(self._writer)

    async def _writer(self) -> None:
        conn, ws = self.conn, self.ws
        outbox = conn._outbox
        try:
            while (batch := await outbox.get_batch()) is not None:
                await ws.send_batch(batch)
        except TransportClosed as exc:
            outbox.discard()
            code = exc.record.code
            conn._request_close(code, "", "client", graceful=False)
        finally:
            self._writer_finished = True
            self._made_progress()

    async def _wind_down(self) -> None:
        conn = self.conn
        disconnect = conn._disconnect
        assert disconnect is not None
        if conn._graceful and disconnect.initiator == "server":
            deadline = self._deadline
            if deadline is None:
                deadline = trio.current_time() + self.rt.config.close_timeout
            with trio.move_on_at(deadline):
                self._close_intake()
                while not self._intake_finished:
                    await self._wait_progress()
                conn._outbox.close()
                while not self._writer_finished:
                    await self._wait_progress()
        self._drop_work()

    async def _close_socket(self) -> None:
        disconnect = self.conn._disconnect
        code, reason = closes.SHUTTING_DOWN
        if disconnect is not None and disconnect.initiator == "server":
            code, reason = disconnect.code, disconnect.reason
        with trio.move_on_after(self.rt.config.close_timeout):
            if self._abandon:
                await self.ws.abandon(code, reason)
            else:
                await self.ws.aclose(code, reason)
            await self.ws.wait_reader_done()

    async def _finish(self, began: bool) -> None:
        """Runs shielded: the connection is over, whatever ended it."""
        conn, rt = self.conn, self.rt
        conn._request_close(*closes.SHUTTING_DOWN, "server", graceful=False)
        conn._outbox.discard()
        if self._beat is not None and rt.heartbeat is not None:
            rt.heartbeat.forget(self._beat)
        await rt.hub.leave(conn)
        if self.ws.closed is None:  # cancelled from outside before closing
            await self._close_socket()
        if not began:
            return
        disconnect = conn._disconnect
        assert disconnect is not None
        for hook in rt.on_disconnect:
            with trio.move_on_after(rt.config.hook_timeout) as scope:
                try:
                    await hook(conn, disconnect)
                except Exception:
                    logger.exception(
                        "on_disconnect hook failed for connection %s",
                        conn.id,
                        extra=log_fields(conn),
                    )
            if scope.cancelled_caught:
                logger.warning(
                    "on_disconnect hook %s timed out for connection %s",
                    _hook_name(hook),
                    conn.id,
                    extra=log_fields(conn),
                )


def _hook_name(hook: Hook) -> str:
    return str(getattr(hook.fn, "__qualname__", hook.fn))


_OVERLOADED_MESSAGE = "too many requests are waiting on this connection; slow down and retry"
_RATE_LIMITED_MESSAGE = "too many messages; slow down"


async def _handle_frame(
    handler: FrameHandler, frame: str | bytes, conn: Connection
) -> str | bytes | None:
    """Run the frame handler; it has no error replies, so failures close with 1011."""
    try:
        result = await handler(frame, conn)
    except Exception:
        logger.exception("frame handler failed on connection %s", conn.id, extra=log_fields(conn))
        conn._request_close(*closes.INTERNAL, "server")
        return None
    if result is not None and not isinstance(result, str | bytes):
        logger.error(
            "frame handler returned %s, not str, bytes or None",
            type(result).__name__,
            extra=log_fields(conn),
        )
        conn._request_close(*closes.INTERNAL, "server")
        return None
    return result
