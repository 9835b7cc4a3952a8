"""The :class:`App`: its options and state, and the mixins that make up its API.

Registration is ``_registration`` (the ``add_*`` methods and their checks) and
``_decorators`` (their decorator forms); running is ``_server.serving``; pushing from
anywhere is ``_server.messaging``. This module gathers them and turns the options into
a :class:`Config`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import cattrs

from ._config import DEFAULT_SUBPROTOCOLS, Config, SlowConsumerPolicy
from ._converter import make_converter
from ._declared import EventInfo
from ._decorators import Decorators
from ._errors import SchemaError
from ._history import History
from ._http import HTTPRoutes, Response
from ._metrics import Metrics
from ._presence import DEFAULT_PRESENCE_TTL, Presence
from ._proxy import DEFAULT_FORWARDED_ALLOW_IPS
from ._request import Request
from ._routing import Handler, Route
from ._server.addressing import default_user_id
from ._server.admission import AcceptHook
from ._server.coalesce import CoalesceStats
from ._server.instruments import Instruments
from ._server.messaging import Messaging
from ._server.serving import Lifespan, Serving
from ._server.static import CLIENT_SCRIPT, PackageFile
from ._signatures import FrameHandler, Hook
from ._wire.deflate import Deflate
from .brokers import Broker, BrokerState, MemoryBroker
from .contracts.asyncapi import asyncapi_json

logger = logging.getLogger("wsroute")


class App(Decorators, Serving, Messaging):
    """A wsroute application: its handlers, hooks, options and broker.

    Args:
        converter: the cattrs converter for payloads and results; defaults to a new
            strict converter (:func:`wsroute.make_converter`).
        broker: the pub/sub broker; defaults to an embedded :class:`MemoryBroker`.
        default_topic: topic every connection joins on connect and that broadcasts
            without ``topic=`` publish to; ``None`` for no automatic topic.
        max_concurrency: handlers run at once per connection (1 = in request order).
        max_queued_requests: requests waiting per connection before new ones are
            answered ``overloaded``.
        outbox_size: frames queued per connection before ``slow_consumer`` applies.
        slow_consumer: ``"close"`` (1008), ``"drop_oldest"`` or ``"drop_newest"``.
        max_message_size: largest client message in bytes; larger closes with 1009
            (for a compressed message, its size once decompressed).
        compression: ``"deflate"`` (or a :class:`wsroute.Deflate` with its options)
            to compress messages with permessage-deflate for clients that offer it
            (every browser does); ``None`` (default) for no compression. See
            docs/limits.md for what it costs.
        handshake_timeout: seconds for a client to complete the opening handshake.
        close_timeout: seconds for a graceful close (handlers in flight, flush, close
            handshake) before the socket is dropped.
        shutdown_timeout: seconds in-flight handlers get to finish on shutdown.
        hook_timeout: seconds each ``on_connect`` or ``on_disconnect`` hook may run;
            an ``on_connect`` hook that overruns closes the connection with 1011.
        broker_state_events: send every client a ``broker_state`` event when the
            broker connection is lost or recovered, so clients can resync.
        history: topic patterns whose events the broker keeps, numbered, so that a
            client coming back recovers what it missed and ``app.history`` reads
            them: ``{"room:*": History(size=100, ttl=300)}`` (docs/history.md). The
            first pattern a topic matches decides; ``*`` matches any characters.
        presence: topic patterns whose subscribers are listed cluster-wide
            (``app.presence``, the ``wsroute.presence`` request): ``["room:*"]``, or
            ``{"room:*": Presence(events=True)}`` for join and leave events
            (docs/presence.md).
        presence_ttl: seconds within which the presence entries of a process that
            died without cleaning up are gone (its heartbeat's lifetime).
        allowed_origins: browser origins allowed to connect (exact match, e.g.
            ``["https://app.example.com"]``) or a function ``(origin) -> bool``; others
            get 403. ``None`` allows any origin: see docs/limits.md for the risk.
        subprotocols: subprotocols the server speaks, in order of preference; the
            first one the client offers is selected (``conn.subprotocol``). By
            default ``wsroute.v1.json`` and ``wsroute.v1.msgpack`` (messages in
            msgpack, in binary frames); a client that offers none of them speaks
            JSON with no subprotocol, unless ``require_subprotocol``.
        require_subprotocol: refuse (400) clients that offer none of ``subprotocols``.
        max_connections: open connections per process; more are refused with 503.
        max_connections_per_ip: open connections per client address (429); off by
            default because clients behind one proxy share an address.
        connect_rate_limit: ``(upgrades, seconds)`` per client address (behind a
            trusted proxy, the client's); more upgrade requests in a window are
            refused with 429 and ``Retry-After``. Off by default, for the same
            reason (docs/limits.md).
        ping_interval: seconds between pings to each client; ``None`` disables.
        ping_timeout: seconds to wait for the pong before closing with 1011.
        rate_limit: ``(messages, seconds)`` per connection; excess messages get
            ``rate_limited`` errors, twice the limit closes with 1008. Off by default.
        invalid_message_limit: ``(frames, seconds)``; more invalid frames than this
            (bad JSON, bad envelope, unknown type, invalid data) close with 1008.
        handler_timeout: seconds a handler may run before its request gets a
            ``timeout`` error; ``None`` (default) for no limit. Routes may override.
        user_id: derives ``conn.user_id`` (and the ``user:<id>`` topic) from what the
            accept hook returned; by default the value itself if a str or int, else
            its ``id`` attribute or key, else no user.
        client_path: the path a plain GET fetches the JavaScript client from
            (``wsroute.js``); ``None`` to not serve it.
        health_path: the path of the health check (200 while the process serves);
            ``None`` turns it off. See docs/metrics.md.
        ready_path: the path of the readiness check (200 while the broker is
            connected and the app is not shutting down, else 503); ``None`` turns
            it off.
        metrics_path: the path of the metrics in Prometheus's text format
            (``app.metrics``); ``None`` turns it off.
        proxy_headers: take the client's address (``conn.request.remote``, which
            per-IP caps count) from ``X-Forwarded-For`` or ``Forwarded``, and its
            scheme (``conn.request.scheme``) from ``X-Forwarded-Proto`` or
            ``Forwarded: proto=``, when the direct peer is one of
            ``forwarded_allow_ips`` (docs/deployment.md).
        forwarded_allow_ips: the proxies believed: IP addresses and networks, as a
            list or comma-separated (``"127.0.0.1,10.0.0.0/8"``); ``"*"`` for every
            peer. Only a proxy on the same host by default.
        asyncapi: a path where a plain GET fetches the app's AsyncAPI document
            (JSON, made when first asked for), e.g. ``"/asyncapi.json"``; ``None``
            (default) to not serve it (docs/contracts.md).
    """

    def __init__(
        self,
        *,
        converter: cattrs.Converter | None = None,
        broker: Broker | None = None,
        default_topic: str | None = "all",
        max_concurrency: int = 1,
        max_queued_requests: int = 64,
        outbox_size: int = 1024,
        slow_consumer: SlowConsumerPolicy | str = SlowConsumerPolicy.CLOSE,
        max_message_size: int = 1024 * 1024,
        compression: Deflate | Literal["deflate"] | None = None,
        handshake_timeout: float = 10.0,
        close_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        hook_timeout: float = 5.0,
        broker_state_events: bool = False,
        history: Mapping[str, History] | None = None,
        presence: Sequence[str] | Mapping[str, Presence] | None = None,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
        allowed_origins: Sequence[str] | Callable[[str], bool] | None = None,
        subprotocols: Sequence[str] = DEFAULT_SUBPROTOCOLS,
        require_subprotocol: bool = False,
        max_connections: int | None = 10_000,
        max_connections_per_ip: int | None = None,
        connect_rate_limit: tuple[int, float] | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        rate_limit: tuple[int, float] | None = None,
        invalid_message_limit: tuple[int, float] | None = (10, 60.0),
        handler_timeout: float | None = None,
        user_id: Callable[[Any], str | None] = default_user_id,
        client_path: str | None = "/wsroute.js",
        health_path: str | None = "/healthz",
        ready_path: str | None = "/readyz",
        metrics_path: str | None = "/metrics",
        proxy_headers: bool = True,
        forwarded_allow_ips: str | Sequence[str] = DEFAULT_FORWARDED_ALLOW_IPS,
        asyncapi: str | None = None,
    ) -> None:
        self.config = Config(
            default_topic=default_topic,
            max_concurrency=max_concurrency,
            max_queued_requests=max_queued_requests,
            outbox_size=outbox_size,
            slow_consumer=slow_consumer,
            max_message_size=max_message_size,
            compression=compression,
            handshake_timeout=handshake_timeout,
            close_timeout=close_timeout,
            shutdown_timeout=shutdown_timeout,
            hook_timeout=hook_timeout,
            broker_state_events=broker_state_events,
            history=history,
            presence=presence,
            presence_ttl=presence_ttl,
            allowed_origins=allowed_origins,
            subprotocols=subprotocols,
            require_subprotocol=require_subprotocol,
            max_connections=max_connections,
            max_connections_per_ip=max_connections_per_ip,
            connect_rate_limit=connect_rate_limit,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            rate_limit=rate_limit,
            invalid_message_limit=invalid_message_limit,
            handler_timeout=handler_timeout,
            health_path=health_path,
            ready_path=ready_path,
            metrics_path=metrics_path,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
        )
        self.converter = converter if converter is not None else make_converter()
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self._routes: dict[str, Route] = {}
        self._on_connect: list[Hook] = []
        self._on_disconnect: list[Hook] = []
        self._lifespans: list[Lifespan] = []
        self._accept_hook: AcceptHook | None = None
        self._info: dict[str, Handler] = {}
        self._user_id = user_id
        #: Counters of request coalescing (see ``direct(..., coalesce=True)``).
        self.coalesce_stats = CoalesceStats()
        #: This app's metrics (docs/metrics.md), served at ``metrics_path``.
        self.metrics = Metrics()
        self._instruments = Instruments(self.metrics)
        stats = self.coalesce_stats
        self._instruments.coalesce_runs.function = lambda: stats.executions
        self._instruments.coalesced.function = lambda: stats.coalesced
        self._frame_handler: FrameHandler | None = None
        self._on_broker_state: list[Callable[[BrokerState], Awaitable[Any]]] = []
        self._started = False
        self._starting = False
        self._stop_requested = False
        self._runtime = None
        self._tasks = None
        self._pending_tasks = []
        self._http = HTTPRoutes()
        if client_path is not None:
            self._http.add(client_path, PackageFile(CLIENT_SCRIPT), "the JavaScript client")
        self._events: list[EventInfo] = []
        self._asyncapi_path = asyncapi
        if asyncapi is not None:
            document = AsyncAPIDocument(self)
            self._http.add(asyncapi, document, "the AsyncAPI document")
            self._lifespans.append(document.prepare)


class AsyncAPIDocument:
    """The GET route of ``App(asyncapi=...)``: the document as JSON, made when the app
    starts serving (every route is registered by then, and a type without a schema
    stops the start with ``SchemaError`` rather than failing a request later)."""

    __slots__ = ("_app", "_body")

    def __init__(self, app: App) -> None:
        self._app = app
        self._body: bytes | None = None

    async def prepare(self) -> AsyncIterator[None]:
        """A lifespan, the app's first.

        Raises:
            SchemaError: a type has no schema; the message says how to serve anyway.
        """
        try:
            self._body = asyncapi_json(self._app)
        except SchemaError as exc:
            raise SchemaError(
                f"cannot serve App(asyncapi=...): {exc} (App(asyncapi=...) takes no"
                " overrides: serve wsroute.contracts.asyncapi_json(app, overrides=...) from"
                " a GET route of your own instead)"
            ) from exc
        yield

    async def __call__(self, request: Request) -> Response:
        if self._body is None:  # asked before the lifespans ran
            self._body = asyncapi_json(self._app)
        return Response(self._body, content_type="application/json")
