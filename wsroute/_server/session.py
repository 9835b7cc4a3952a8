"""The lifetime of one accepted connection: its start, its heartbeat, its writer.

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

How it ends, whoever starts it, is the :class:`~wsroute._server.ending.Ending`
mixin's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .._errors import BrokerError
from .._wire import closes
from .addressing import conn_topic, user_topic
from .connection import log_fields
from .ending import Context, Ending, hook_name
from .intake import Intake
from .writer import PENDING, QUEUE, TransportClosed

if TYPE_CHECKING:
    from .connection import Connection
    from .heartbeat import Handle
    from .transport import Transport

logger = logging.getLogger("wsroute")


class Session(Ending):
    __slots__ = (  # besides Ending's
        "_abandon",
        "_aborted",
        "_beat",
        "_began",
        "_connect_scope",
        "_deadline",
        "_intake",
        "_ping_sent",
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
                        hook_name(hook),
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

    # -- writing ---------------------------------------------------------------------

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
