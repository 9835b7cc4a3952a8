"""One serving of an app: its hub, dispatcher and live connections, its stop and drain.

Each stream it serves, from the handshake to the end, is the :class:`~.streams.Streams`
mixin's (``streams``): ``handle_stream`` and ``serve_stream``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cattrs
import trio

from .._config import Config
from .._http import HTTPRoutes
from .._protocol import event
from .._routing import Handler, Route
from .._signatures import FrameHandler, Hook
from .._wire import closes
from .admission import AcceptHook, Gate
from .connection import Connection
from .dispatch import Dispatcher
from .heartbeat import Heartbeat
from .hub import Hub
from .instruments import Instruments
from .opening import Opening
from .probes import Probes
from .session import Session
from .streams import Streams, StreamState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from .coalesce import SingleFlight

logger = logging.getLogger("wsroute")


class Runtime(Streams):
    """One serving of an app: its hub, dispatcher and live connections."""

    def __init__(
        self,
        *,
        config: Config,
        converter: cattrs.Converter,
        routes: Mapping[str, Route],
        on_connect: Sequence[Hook],
        on_disconnect: Sequence[Hook],
        accept_hook: AcceptHook | None,
        frame_handler: FrameHandler | None,
        http: HTTPRoutes,
        info: Mapping[str, Handler],
        flights: SingleFlight,
        user_id: Callable[[Any], str | None],
        hub: Hub,
        broker_name: str,
        instruments: Instruments,
        metrics_page: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.config = config
        self.converter = converter
        self.on_connect = tuple(on_connect)
        self.on_disconnect = tuple(on_disconnect)
        self.hub = hub
        self.instruments = instruments
        self.dispatcher = Dispatcher(routes, hub, info, flights, instruments)
        self._user_id = user_id
        self.frame_handler = frame_handler
        http = Probes(instruments.metrics, self.unready, metrics_page).install(http, config)
        self.opening = Opening(config, http)
        self.gate = Gate(config, accept_hook)
        self.broker_name = broker_name
        self.sessions: set[Session] = set()
        self.heartbeat = Heartbeat(config.ping_interval) if config.ping_interval else None
        self._stop = trio.Event()
        self._stop_close = closes.SHUTTING_DOWN  # or RESTARTING: see request_stop
        self._stopping = False
        self._streams: set[StreamState] = set()  # every stream from handshake to end
        self._aborting = False
        self._all_ended: trio.Event | None = None

    @property
    def connections(self) -> list[Connection]:
        return [session.conn for session in self.sessions]

    def push_to_all(self, type: str, data: Any) -> None:
        """Queue an event on every local connection, bypassing the broker."""
        frame = event(type, None, data)
        for session in self.sessions:
            session.conn._push(frame)
        self.instruments.events.value += len(self.sessions)

    def unready(self) -> str | None:
        """Why this app should get no new clients now, or ``None`` (``/readyz``)."""
        if self._stopping or self._stop.is_set():
            return "shutting down"
        if not self.instruments.broker_connected.value:
            return "broker unavailable"
        return None

    def request_stop(self, *, restart: bool = False) -> None:
        """Ask ``tcp.serve_tcp`` to stop accepting and drain (idempotent); connections
        close with 1001, or 1012 with ``restart`` (the server comes back soon)."""
        if not self._stop.is_set() and restart:
            self._stop_close = closes.RESTARTING
        self._stop.set()

    async def abort_when_cancelled(self) -> None:
        """Sleep until cancelled, then abort every connection (see handle_stream)."""
        try:
            await trio.sleep_forever()
        finally:
            self._aborting = True
            for state in list(self._streams):
                state.abort()

    async def stopped(self) -> None:
        """Wait for ``request_stop``."""
        await self._stop.wait()

    async def all_streams_ended(self) -> None:
        """Wait until every stream has ended (after ``drain``)."""
        while self._streams:
            self._all_ended = trio.Event()
            await self._all_ended.wait()
        self._all_ended = None

    def drain(self) -> float:
        """Start closing every connection with 1001; return the deadline for all of it."""
        self._stopping = True
        config = self.config
        deadline = trio.current_time() + config.shutdown_timeout
        logger.info(
            "shutting down: closing %d connection(s), waiting up to %.1f s",
            len(self.sessions),
            config.shutdown_timeout,
        )
        for session in list(self.sessions):
            session.begin_close(*self._stop_close, deadline)
        return (
            deadline + config.close_timeout + config.hook_timeout * max(1, len(self.on_disconnect))
        )
