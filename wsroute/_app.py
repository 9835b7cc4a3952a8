"""The :class:`App`: registration (decorators over ``add_*`` methods), options, serving."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import cattrs

from ._config import DEFAULT_SUBPROTOCOLS, Config, SlowConsumerPolicy
from ._converter import make_converter
from ._declared import ErrorSpec, EventInfo, check_event
from ._errors import RegistrationError
from ._history import History
from ._http import HTTPRoutes, Response
from ._metrics import Metrics
from ._presence import DEFAULT_PRESENCE_TTL, Presence
from ._proxy import DEFAULT_FORWARDED_ALLOW_IPS
from ._request import Request
from ._routing import (
    CoalesceSpec,
    FrameHandler,
    Handler,
    Hook,
    Route,
    RouteInfo,
    RouteKind,
    TopicSpec,
    Values,
    check_name,
    check_topic,
    describe,
    is_async,
)
from ._server.addressing import default_user_id
from ._server.admission import AcceptHook
from ._server.coalesce import CoalesceStats
from ._server.connection import Connection, Disconnect
from ._server.instruments import Instruments
from ._server.messaging import Messaging
from ._server.probes import check_path
from ._server.serving import Lifespan, Serving
from ._server.static import CLIENT_SCRIPT, PackageFile, StaticFiles
from ._wire.deflate import Deflate
from .brokers import Broker, BrokerState, MemoryBroker
from .contracts.asyncapi import asyncapi_json

logger = logging.getLogger("wsroute")

#: What handlers and hooks may take besides a payload (see ``_routing.Values``).
VALUES = Values(connection=Connection, disconnect=Disconnect)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
A = TypeVar("A", bound=AcceptHook)


class App(Serving, Messaging):
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

    # -- registration ------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._started:
            raise RegistrationError(
                f"cannot register {what}: this app has already started serving. Register"
                " every handler and hook at import time, before serve()/run()."
            )

    def add_direct(
        self,
        name: str,
        fn: Callable[..., Awaitable[Any]],
        *,
        timeout: float | None = None,
        coalesce: CoalesceSpec = False,
        coalesce_timeout: float | None = None,
        errors: ErrorSpec = (),
    ) -> None:
        """Register ``fn`` to answer messages of type ``name`` with a reply to the sender.

        Args:
            timeout: overrides the app's ``handler_timeout`` for this route.
            coalesce: ``True`` to let identical concurrent requests (same type and
                data) share one run of ``fn`` and all get its result or error; or a
                function ``(payload, conn) -> key`` for a custom key. The run sees the
                first requester's connection: include the user in a custom key when
                the result depends on who asks.
            coalesce_timeout: seconds the shared run may take; waiters then get
                ``timeout`` error replies.
            errors: the codes of the ``HandlerError`` s ``fn`` raises, or a dict of
                code -> what it means: documented in the app's contracts
                (docs/contracts.md), not enforced.
        """
        self._add(
            name,
            RouteKind.DIRECT,
            fn,
            timeout=timeout,
            coalesce=coalesce,
            coalesce_timeout=coalesce_timeout,
            errors=errors,
        )

    def add_broadcast(
        self,
        name: str,
        fn: Callable[..., Awaitable[Any]],
        *,
        topic: TopicSpec | None = None,
        timeout: float | None = None,
        exclude_sender: bool = False,
        errors: ErrorSpec = (),
    ) -> None:
        """Register ``fn`` to publish its return value as an event on ``topic``.

        ``topic`` is a string or a function ``(payload, conn) -> str``; by default the
        app's ``default_topic``. With ``exclude_sender``, the sending connection does
        not receive the event (it still gets its acknowledgement reply). ``errors``
        as for :meth:`add_direct`.
        """
        check_name(name)
        if topic is None:
            if self.config.default_topic is None:
                raise RegistrationError(
                    f"broadcast {name!r} has no topic: pass topic=... or give the App a"
                    " default_topic"
                )
            topic = self.config.default_topic
        self._add(
            name,
            RouteKind.BROADCAST,
            fn,
            check_topic(name, topic),
            timeout=timeout,
            exclude_sender=exclude_sender,
            errors=errors,
        )

    def _add(
        self,
        name: str,
        kind: RouteKind,
        fn: Callable[..., Awaitable[Any]],
        topic: TopicSpec | None = None,
        *,
        timeout: float | None = None,
        coalesce: CoalesceSpec = False,
        coalesce_timeout: float | None = None,
        exclude_sender: bool = False,
        errors: ErrorSpec = (),
    ) -> None:
        check_name(name)
        self._check_open(f"{kind.value} handler {name!r}")
        if self._frame_handler is not None:
            raise RegistrationError(
                f"cannot register {kind.value} handler {name!r}: this app has a frame handler,"
                " which receives every frame instead of the JSON protocol"
            )
        if timeout is None:
            timeout = self.config.handler_timeout
        handler = Handler(
            name,
            kind,
            fn,
            self.converter,
            topic,
            timeout,
            values=VALUES,
            coalesce=coalesce,
            coalesce_timeout=coalesce_timeout,
            exclude_sender=exclude_sender,
            errors=errors,
        )
        route = self._routes.get(name) or Route(name)
        existing = route.direct if kind is RouteKind.DIRECT else route.broadcast
        if existing is not None:
            raise RegistrationError(
                f"a {kind.value} handler for {name!r} is already registered"
                f" ({describe(existing.fn)}); {describe(fn)} would replace it. A message"
                f" type has at most one direct and one broadcast handler: rename one."
            )
        if kind is RouteKind.DIRECT:
            route.direct = handler
        else:
            route.broadcast = handler
        self._routes[name] = route

    def add_info(self, name: str, fn: Callable[..., Awaitable[Any]]) -> None:
        """Register ``fn`` to handle info messages of type ``name``.

        Info messages come from elsewhere in the system (``app.tell_user``,
        ``tell_connection``, ``tell_topic``), in any process, and run inside each
        target connection's context, in order with its requests. ``fn`` takes a
        payload and/or a ``Connection``, like a direct handler; it may send,
        subscribe or close. Nothing reaches the client unless it sends something.
        """
        check_name(name)
        self._check_open(f"info handler {name!r}")
        if name in self._info:
            raise RegistrationError(
                f"an info handler for {name!r} is already registered"
                f" ({describe(self._info[name].fn)}); rename one"
            )
        timeout = self.config.handler_timeout
        self._info[name] = Handler(
            name, RouteKind.INFO, fn, self.converter, None, timeout, values=VALUES
        )

    def declare_event(
        self,
        name: str,
        data: Any = None,
        *,
        topic: str | None = None,
        description: str | None = None,
    ) -> None:
        """Declare an event the app pushes by itself, for its contracts (docs/contracts.md).

        Broadcast routes declare their events; this is for the others: ``conn.send``,
        ``send_to_user`` and ``send_to_connection`` (``topic=None``), and
        ``app.publish`` (``topic``: the topic, or a template such as ``"room:{room}"``
        whose ``{name}`` parts stand for any text). It changes nothing at run time.

        Args:
            data: the type of the event's ``data``; ``None`` for none, ``Any`` for any
                JSON value.
            description: what the event means.

        Raises:
            RegistrationError: a bad name or topic template, or the same event declared
                twice for one topic.
        """
        check_name(name)
        self._check_open(f"event {name!r}")
        self._events.append(check_event(name, data, topic, description, self._events))

    def add_on_connect(self, fn: Callable[..., Awaitable[Any]]) -> None:
        """Run ``fn(conn)`` when a connection opens; hooks run in registration order."""
        self._check_open("an on_connect hook")
        self._on_connect.append(Hook(fn, "on_connect hook", values=VALUES, disconnect=False))

    def add_on_disconnect(self, fn: Callable[..., Awaitable[Any]]) -> None:
        """Run ``fn(conn, reason)`` once when a connection whose on_connect began ends."""
        self._check_open("an on_disconnect hook")
        self._on_disconnect.append(Hook(fn, "on_disconnect hook", values=VALUES, disconnect=True))

    def add_on_broker_state(self, fn: Callable[[BrokerState], Awaitable[Any]]) -> None:
        """Run ``fn(state)`` when the broker connection is lost or recovered.

        Hooks run in the background, in registration order; errors are logged.
        """
        self._check_open("an on_broker_state hook")
        if not inspect.iscoroutinefunction(fn):
            raise RegistrationError(
                f"on_broker_state hook {describe(fn)} must be an async function:"
                " write `async def hook(state: BrokerState) -> None`"
            )
        self._on_broker_state.append(fn)

    def add_lifespan(self, fn: Lifespan) -> None:
        """Run ``fn`` around serving: an async generator function that yields once, or a
        function returning an async context manager. It may take the app as argument."""
        self._check_open("a lifespan")
        if not (inspect.isasyncgenfunction(fn) or callable(fn)):
            raise RegistrationError(f"lifespan {fn!r} must be callable")
        if len(inspect.signature(fn).parameters) > 1:
            raise RegistrationError(
                f"lifespan {describe(fn)} takes at most one parameter (the app)"
            )
        self._lifespans.append(fn)

    def add_accept(self, fn: AcceptHook) -> None:
        """Run ``fn(request)`` before accepting each upgrade (authentication).

        Its return value becomes ``conn.user``; raising :class:`Reject` refuses the
        upgrade with that HTTP status. See also :func:`wsroute.bearer_auth`.
        """
        self._check_open("an accept hook")
        if self._accept_hook is not None:
            raise RegistrationError(
                f"an accept hook is already registered ({describe(self._accept_hook)});"
                " an app has one: combine the checks in one function"
            )
        if not (inspect.iscoroutinefunction(fn) and len(inspect.signature(fn).parameters) == 1):
            raise RegistrationError(
                f"accept hook {describe(fn)} must be `async def accept(request: Request)`"
            )
        self._accept_hook = fn

    def add_get(self, path: str, fn: Callable[..., Awaitable[Any]]) -> None:
        """Answer plain HTTP ``GET`` (and ``HEAD``) requests for ``path`` with ``fn``.

        ``async def fn(request: Request) -> Response | str | bytes``: for pages, health
        checks and the like next to the WebSocket endpoint, on the same port. A
        request that asks for a WebSocket upgrade is never routed here. ``fn`` runs
        under ``handshake_timeout``; if it raises, the answer is 500 and the error
        is logged. See docs/http.md.
        """
        what = f"GET route {path!r}"
        self._check_open(what)
        if not is_async(fn):
            raise RegistrationError(
                f"{what}: {describe(fn)} must be an async function:"
                " write `async def handler(request: Request) -> Response`"
            )
        takes = len(inspect.signature(fn).parameters)
        if takes > 1:
            raise RegistrationError(
                f"{what}: {describe(fn)} takes at most one parameter, the Request"
            )
        handler = fn if takes == 1 else _ignore_request(fn)
        check_path(self.config, path, what)
        self._http.add(path, handler, f"{describe(fn)}")

    def add_static(
        self, path: str, directory: str | os.PathLike[str], *, index: str = "index.html"
    ) -> None:
        """Serve the files of ``directory`` to plain ``GET`` requests below ``path``
        (``"/"`` for every path no other route answers); a path ending in ``/`` gets
        its ``index`` file. Files outside ``directory`` are never served.

        Raises:
            RegistrationError: ``directory`` is not a directory.
        """
        what = f"static files at {path!r}"
        self._check_open(what)
        check_path(self.config, path, what, mount=True)
        self._http.mount(path, StaticFiles(directory, index=index), f"{what} ({directory})")

    def add_frame_handler(self, fn: Callable[..., Awaitable[Any]]) -> None:
        """Receive every frame raw instead of the JSON protocol (a low-level route).

        ``async def fn(frame: str | bytes, conn: Connection) -> str | bytes | None``:
        a returned ``str`` is sent back as a text frame, ``bytes`` as a binary frame.
        Binary frames are accepted. Hooks, limits and ``conn.send_frame`` still apply.
        """
        self._check_open("a frame handler")
        if self._asyncapi_path is not None:
            raise RegistrationError(
                f"a frame handler replaces protocol v1, which the AsyncAPI document served at"
                f" {self._asyncapi_path!r} describes: leave out App(asyncapi=...)"
            )
        if self._routes or self._frame_handler is not None:
            raise RegistrationError(
                "a frame handler replaces the JSON protocol: an app has either one frame"
                " handler or direct/broadcast handlers, not both"
            )
        self._frame_handler = FrameHandler(fn, values=VALUES)

    def direct(
        self,
        name: str,
        *,
        timeout: float | None = None,
        coalesce: CoalesceSpec = False,
        coalesce_timeout: float | None = None,
        errors: ErrorSpec = (),
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add_direct`."""

        def register(fn: F) -> F:
            self.add_direct(
                name,
                fn,
                timeout=timeout,
                coalesce=coalesce,
                coalesce_timeout=coalesce_timeout,
                errors=errors,
            )
            return fn

        return register

    def broadcast(
        self,
        name: str,
        *,
        topic: TopicSpec | None = None,
        timeout: float | None = None,
        exclude_sender: bool = False,
        errors: ErrorSpec = (),
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add_broadcast`."""

        def register(fn: F) -> F:
            self.add_broadcast(
                name,
                fn,
                topic=topic,
                timeout=timeout,
                exclude_sender=exclude_sender,
                errors=errors,
            )
            return fn

        return register

    def info(self, name: str) -> Callable[[F], F]:
        """Decorator form of :meth:`add_info`."""

        def register(fn: F) -> F:
            self.add_info(name, fn)
            return fn

        return register

    def get(self, path: str) -> Callable[[F], F]:
        """Decorator form of :meth:`add_get`."""

        def register(fn: F) -> F:
            self.add_get(path, fn)
            return fn

        return register

    def accept(self, fn: A) -> A:
        """Decorator form of :meth:`add_accept`."""
        self.add_accept(fn)
        return fn

    def frame_handler(self, fn: F) -> F:
        """Decorator form of :meth:`add_frame_handler`."""
        self.add_frame_handler(fn)
        return fn

    def on_connect(self, fn: F) -> F:
        """Decorator form of :meth:`add_on_connect`."""
        self.add_on_connect(fn)
        return fn

    def on_disconnect(self, fn: F) -> F:
        """Decorator form of :meth:`add_on_disconnect`."""
        self.add_on_disconnect(fn)
        return fn

    def on_broker_state(self, fn: F) -> F:
        """Decorator form of :meth:`add_on_broker_state`."""
        self.add_on_broker_state(fn)
        return fn

    def lifespan(self, fn: Lifespan) -> Lifespan:
        """Decorator form of :meth:`add_lifespan`."""
        self.add_lifespan(fn)
        return fn

    @property
    def events(self) -> list[EventInfo]:
        """The events declared with :meth:`declare_event`, in order."""
        return list(self._events)

    @property
    def accept_hook(self) -> AcceptHook | None:
        """The accept hook, or ``None`` (for tools: ``wsroute asyncapi``)."""
        return self._accept_hook

    @property
    def has_frame_handler(self) -> bool:
        """Whether a frame handler (:meth:`add_frame_handler`) replaces protocol v1."""
        return self._frame_handler is not None

    @property
    def handlers(self) -> list[RouteInfo]:
        """Every registered direct and broadcast handler, by message type, direct
        before broadcast."""
        return [
            handler.info()
            for route in self._routes.values()
            for handler in (route.direct, route.broadcast)
            if handler is not None
        ]


class AsyncAPIDocument:
    """The GET route of ``App(asyncapi=...)``: the document as JSON, made when the app
    starts serving (every route is registered by then, and a type without a schema
    stops the start with ``SchemaError`` rather than failing a request later)."""

    __slots__ = ("_app", "_body")

    def __init__(self, app: App) -> None:
        self._app = app
        self._body: bytes | None = None

    async def prepare(self) -> AsyncIterator[None]:
        """A lifespan, the app's first."""
        self._body = asyncapi_json(self._app)
        yield

    async def __call__(self, request: Request) -> Response:
        if self._body is None:  # asked before the lifespans ran
            self._body = asyncapi_json(self._app)
        return Response(self._body, content_type="application/json")


def _ignore_request(fn: Callable[[], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    async def handler(request: Any) -> Any:
        return await fn()

    return handler
