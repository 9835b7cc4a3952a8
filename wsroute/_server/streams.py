"""Serving one stream: from its handshake to its end, under the runtime.

``Runtime.handle_stream`` turns any byte stream into a served connection. The TCP
server (``tcp.serve_tcp``) and the in-memory test client both go through it (the TCP
server through ``serve_stream``, the same without a watcher per stream), so tests
exercise the same code as production. Nurseries: server → one task per stream, with
one nursery for everything the connection starts. The stream's task itself does the
handshake, runs on_connect, then reads the socket until the connection is closed: an
idle connection has no other task.

:class:`Streams` is a mixin of :class:`~wsroute._server.runtime.Runtime`, which holds
the serving's state (set in ``Runtime.__init__``) and its stop and drain.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import cattrs
import trio

from .._config import Config
from .._errors import Reject
from .._msgpack import ENCODING as MSGPACK_ENCODING
from .._msgpack import SUBPROTOCOL as MSGPACK
from .._request import Request
from .._signatures import FrameHandler, Hook
from .._wire import closes
from .._wire.deflate import Codec
from .._wire.deflate_negotiation import server_codec
from .admission import Admission, Gate, describe_request, request_fields
from .connection import Connection, log_fields
from .dispatch import Dispatcher
from .heartbeat import Heartbeat
from .hub import Hub
from .instruments import Instruments
from .opening import Opening, refuse
from .session import Session
from .transport import Transport
from .writer import TransportClosed

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("wsroute")


class Streams:
    """The part of a :class:`~wsroute._server.runtime.Runtime` that serves each stream."""

    # Set by Runtime.__init__; listed here for the type checker.
    config: Config
    converter: cattrs.Converter
    on_connect: tuple[Hook, ...]
    on_disconnect: tuple[Hook, ...]
    hub: Hub
    instruments: Instruments
    dispatcher: Dispatcher
    frame_handler: FrameHandler | None
    opening: Opening
    gate: Gate
    sessions: set[Session]
    heartbeat: Heartbeat | None
    _user_id: Callable[[Any], str | None]
    _stop_close: tuple[int, str]
    _stopping: bool
    _streams: set[StreamState]
    _aborting: bool
    _all_ended: trio.Event | None

    async def handle_stream(
        self, stream: trio.abc.Stream, *, remote: tuple[str, int] | None = None
    ) -> None:
        """Serve one client on ``stream`` until the connection ends. Never raises.

        The connection's work is shielded so that cancellation from outside never cuts
        it mid-frame, and trio-websocket's socket reader stays alive long enough to
        complete the closing handshake. Instead, cancelling the caller aborts the
        session: it sends 1001, runs its on_disconnect hooks and returns within
        ``close_timeout`` + ``hook_timeout``.
        """
        state = StreamState()
        async with trio.open_nursery() as guard:
            guard.start_soon(_abort_when_cancelled, state)
            await self.serve_stream(stream, remote, state)
            guard.cancel_scope.cancel()

    async def serve_stream(
        self,
        stream: trio.abc.Stream,
        remote: tuple[str, int] | None = None,
        state: StreamState | None = None,
    ) -> None:
        """``handle_stream`` without a watcher of its own: the TCP server has one for
        all its connections (``abort_when_cancelled``), as a task per connection would
        cost every connection memory and time. The TCP server's accept loop starts it
        directly, so that no wrapper's frame stays on every connection's stack."""
        if state is None:
            state = StreamState()
        self._streams.add(state)
        if self._aborting:
            state.abort()
        try:
            async with trio.open_nursery() as nursery:
                # Shielded: see handle_stream. The nursery's own scope, so that an idle
                # connection does not also hold a scope for the shield.
                nursery.cancel_scope.shield = True
                ws = await self._handshake_and_start(nursery, stream, remote, state)
                if ws is not None:
                    await ws.run_reader()
            timed_out = not state.accepted and nursery.cancel_scope.cancelled_caught
            if timed_out and not state.aborted:
                logger.info("handshake timed out after %.1f s", self.config.handshake_timeout)
        except Exception:
            logger.exception("unexpected error while serving a connection")
        finally:
            if self._end_may_wait(state.session):
                with trio.CancelScope(shield=True):
                    await self._end_stream(state)
            else:
                await self._end_stream(state)  # never waits: nothing to shield
            # The reader closes the socket when it ends; this also closes it when the
            # connection ended before the reader ran (a refusal, a timeout).
            if state.session is not None:
                state.session.ws.close_socket()  # so the transport writes no more
            if isinstance(stream, trio.SocketStream):
                stream.socket.close()  # never waits: no need for aclose's checkpoint
            else:
                await trio.aclose_forcefully(stream)

    def _end_may_wait(self, session: Session | None) -> bool:
        """Whether ending ``session`` may wait (see Session.finish): on_disconnect
        hooks, a broker whose unsubscribe waits, or a close handshake still to do."""
        return session is not None and bool(
            self.on_disconnect or self.hub.subscribe_may_wait or session.ws.closed is None
        )

    async def _end_stream(self, state: StreamState) -> None:
        session = state.session
        if session is not None:
            try:
                await session.finish()
            except Exception:
                logger.exception(
                    "unexpected error while ending a connection", extra=log_fields(session.conn)
                )
            if state.accepted:
                d = session.conn._disconnect
                self.instruments.closed(d.code if d else closes.ABNORMAL, d.initiator if d else "")
            self._log_disconnect(session, state.connected_at)
            self.sessions.discard(session)
        if state.reserved is not None:
            self.gate.release(state.reserved)
        self._streams.discard(state)
        if not self._streams and self._all_ended is not None:
            self._all_ended.set()

    async def _handshake_and_start(
        self,
        nursery: trio.Nursery,
        stream: trio.abc.Stream,
        remote: tuple[str, int] | None,
        state: StreamState,
    ) -> Transport | None:
        """Handshake within ``handshake_timeout``, then start the session in
        ``nursery``; None if refused or out of time.

        The timeout is the deadline of the nursery's own scope while the handshake
        lasts, rather than a cancel scope of its own (one fewer per connection: 2% of
        a churn cycle's instructions): running out of time cancels the nursery, which
        then holds nothing but the handshake, and ``serve_stream`` logs it.
        """
        scope = state.handshake_scope = nursery.cancel_scope
        scope.deadline = trio.current_time() + self.config.handshake_timeout
        if state.aborted:
            scope.cancel()
        opened = await self.opening.read(stream, remote)
        if opened is None:
            return None
        ws, upgrade, request = opened
        admission = await self._admit(ws, request, state)
        if admission is None:
            return None
        codec = server_codec(upgrade.extensions, self.config.compression)
        session = self._new_session(ws, request, admission, state, codec)
        # A frame handler's frames go as the app made them, whatever the subprotocol.
        binary = admission.subprotocol == MSGPACK and self.frame_handler is None
        encoding = MSGPACK_ENCODING if binary else None
        # The connection's own topics are joined before the 101: a client that sees
        # its connection open receives whatever is published to them from then on.
        subscribed = await session.subscribe()
        try:
            await ws.accept(upgrade, admission.subprotocol, codec, encoding)
        except TransportClosed:
            logger.info(
                "%s closed during the handshake",
                describe_request(request),
                extra=request_fields(request),
            )
            return None
        scope.deadline = math.inf
        state.handshake_scope = None
        state.accepted = True
        instruments = self.instruments
        instruments.connections_opened.value += 1
        instruments.connections_open.value += 1
        if logger.isEnabledFor(logging.INFO):
            state.connected_at = trio.current_time()
            logger.info(
                "connect %s %s",
                session.conn.id,
                describe_request(request),
                extra=request_fields(request) | log_fields(session.conn),
            )
        if scope.cancel_called:
            return None  # out of time (or aborted) just as it was answered
        await session.start(nursery, subscribed)
        return ws

    async def _admit(self, ws: Transport, request: Request, state: StreamState) -> Admission | None:
        """Admit ``request``, or refuse it with its answer (``None``)."""
        try:
            if self._stopping:
                raise Reject(503, "server shutting down")
            self.gate.reserve(request)
            state.reserved = request
            admission = await self.gate.admit(request)
        except Reject as refusal:
            self.instruments.refused(refusal.status)
            await refuse(ws, request, refusal)
            return None
        return admission

    def _new_session(
        self,
        ws: Transport,
        request: Request,
        admission: Admission,
        state: StreamState,
        codec: Codec | None,
    ) -> Session:
        config = self.config
        conn = Connection(
            request,
            hub=self.hub,
            unstructure=self.converter.unstructure,
            outbox_size=config.outbox_size,
            policy=config.slow_consumer,
            user=admission.user,
            user_id=self._user_id(admission.user),
            subprotocol=admission.subprotocol,
            compression=codec.header if codec is not None else None,
            invalid_limit=config.invalid_message_limit,
            recover=admission.recover,
            outbox_meter=self.instruments.outbox,
        )
        session = state.session = Session(self, ws, conn)
        self.sessions.add(session)
        if state.aborted:
            session.abort()
        elif self._stopping:
            session.begin_close(*self._stop_close, trio.current_time())
        return session

    @staticmethod
    def _log_disconnect(session: Session, connected_at: float | None) -> None:
        if logger.isEnabledFor(logging.INFO):
            conn = session.conn
            d = conn._disconnect
            fields = log_fields(conn)
            fields["close_code"] = d.code if d else None
            fields["close_reason"] = d.reason if d else None
            fields["closed_by"] = d.initiator if d else None
            if connected_at is not None:  # None: not yet logging at the connect
                fields["duration_seconds"] = round(trio.current_time() - connected_at, 3)
            logger.info(
                "disconnect %s code=%s by=%s reason=%r",
                conn.id,
                d.code if d else "?",
                d.initiator if d else "?",
                d.reason if d else "",
                extra=fields,
            )


class StreamState:
    """What ``abort_when_cancelled`` needs to abort one stream."""

    __slots__ = ("aborted", "accepted", "connected_at", "handshake_scope", "reserved", "session")

    def __init__(self) -> None:
        # While handshaking: the connection nursery's scope, which has the deadline.
        self.handshake_scope: trio.CancelScope | None = None
        self.session: Session | None = None
        self.reserved: Request | None = None  # counted by the gate; released at the end
        self.accepted = False  # the 101 was sent
        self.connected_at: float | None = None  # when the 101 went, if logging INFO
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        if self.handshake_scope is not None:
            self.handshake_scope.cancel()
        if self.session is not None:
            self.session.abort()


async def _abort_when_cancelled(state: StreamState) -> None:
    try:
        await trio.sleep_forever()
    finally:
        state.abort()
