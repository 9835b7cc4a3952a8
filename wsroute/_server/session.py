"""The lifetime of one accepted connection.

A connection's tasks all run in one nursery, the stream's (see ``_runtime``): its
writer, its workers, its closing task and whatever the app starts with
``conn.start_soon``; nothing outlives it. Tasks start only when needed, so an idle
connection costs no task at all besides the stream's own, which runs ``on_connect``
and then reads the socket; a closing task starts when something asks the
connection to close. The socket is not read while ``on_connect`` runs (the kernel
buffers what arrives); each hook runs under ``hook_timeout``, and one that overruns
closes the connection with 1011. The reader hands each complete message to the
connection's intake (``intake``), which decodes it and queues it for the workers
that run handlers, without ever waiting.

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
from typing import TYPE_CHECKING, Protocol

import trio

from .._errors import BrokerError
from .._wire import closes
from .addressing import conn_topic, user_topic
from .connection import log_fields
from .intake import Intake
from .writer import PENDING, QUEUE, TransportClosed

if TYPE_CHECKING:
    from .._config import Config
    from .._signatures import FrameHandler, Hook
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


class Session:
    __slots__ = (
        "_abandon",
        "_aborted",
        "_beat",
        "_began",
        "_connect_scope",
        "_deadline",
        "_intake",
        "_live",
        "_ping_sent",
        "_progress",
        "_writer_finished",
        "conn",
        "rt",
        "ws",
    )

    def __init__(self, rt: Context, ws: Transport, conn: Connection) -> None:
        self.rt = rt
        self.ws = ws
        self.conn = conn
        self._intake = Intake(rt, conn)
        self._began = False  # start() got as far as the outbox: on_disconnect runs
        self._live = False  # connected and no closing task yet
        # For the graceful wind-down: the writer drained.
        self._writer_finished = False
        self._progress: trio.Event | None = None
        self._deadline: float | None = None
        self._connect_scope: trio.CancelScope | None = None  # while on_connect runs
        self._aborted = False
        self._abandon = False  # close without waiting for the peer's answer
        self._ping_sent: float | None = None
        self._beat: Handle | None = None
        conn._info_sink = self._intake.enqueue
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
            self._intake.open()
            if self.rt.heartbeat is not None:
                self._beat = self.rt.heartbeat.watch(self)
        else:
            self._intake.close()  # what the client sends now is not read
        # Before the caller reads the socket (run_reader), so every message, and the
        # end of reading, reaches the session.
        ws.attach(self._intake.on_message, self._reader_ended)
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
        (``Streams._end_may_wait``: keep the two in step)."""
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

    # -- the socket reader's end ------------------------------------------------------

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
        self._intake.close()

    def _made_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def _wait_progress(self) -> None:
        if self._progress is None:
            self._progress = trio.Event()
        await self._progress.wait()

    def _drop_work(self) -> None:
        """Not graceful: cancel running handlers, drop queued requests and frames."""
        self._intake.stop()
        self.conn._outbox.discard()

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
                self._intake.close()
                await self._intake.wait_finished()
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
