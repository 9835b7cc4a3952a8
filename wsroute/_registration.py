"""Registering an app's handlers and hooks: the ``add_*`` methods, and what they check.

A mixin of :class:`~wsroute.App`. Everything a wrong registration can get wrong is
checked here, when the app is built (a duplicate name, a sync function, a missing
annotation, a registration after serving started), so that it fails at import time
with a message naming the fix. The decorators (``_decorators``) are thin wrappers
over these methods: code and decorator registration are one path.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

import cattrs

from ._config import Config
from ._declared import ErrorSpec, EventInfo, check_event
from ._errors import RegistrationError
from ._http import HTTPRoutes
from ._routing import (
    CoalesceSpec,
    Handler,
    Route,
    RouteInfo,
    RouteKind,
    TopicSpec,
    check_name,
    check_topic,
)
from ._server.admission import AcceptHook
from ._server.connection import Connection, Disconnect
from ._server.probes import check_path
from ._server.serving import Lifespan
from ._server.static import StaticFiles
from ._signatures import FrameHandler, Hook, Values, describe, is_async
from .brokers import BrokerState

#: What handlers and hooks may take besides a payload (see ``_signatures.Values``).
VALUES = Values(connection=Connection, disconnect=Disconnect)


class Registration:
    """The ``add_*`` methods of an App, and what they registered, read-only."""

    # Set by App.__init__; listed here for the type checker.
    config: Config
    converter: cattrs.Converter
    _routes: dict[str, Route]
    _info: dict[str, Handler]
    _on_connect: list[Hook]
    _on_disconnect: list[Hook]
    _on_broker_state: list[Callable[[BrokerState], Awaitable[Any]]]
    _lifespans: list[Lifespan]
    _accept_hook: AcceptHook | None
    _frame_handler: FrameHandler | None
    _http: HTTPRoutes
    _events: list[EventInfo]
    _asyncapi_path: str | None
    _started: bool

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


def _ignore_request(fn: Callable[[], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    async def handler(request: Any) -> Any:
        return await fn()

    return handler
