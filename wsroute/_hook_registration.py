"""Registering what an app runs around its message handlers, and what they check.

Connection hooks (``add_on_connect``, ``add_on_disconnect``), broker-state hooks,
lifespans, the accept hook, a frame handler that replaces protocol v1, and plain-HTTP
routes (``add_get``, ``add_static``). The base of
:class:`~wsroute._registration.Registration`, which adds the message handlers: so it
also holds what every ``add_*`` method checks first (``_check_open``) and what
handlers and hooks may take (``VALUES``). As there, every mistake fails when the app
is built, with a message naming the fix.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

from ._config import Config
from ._errors import RegistrationError
from ._http import HTTPRoutes
from ._request import Request
from ._routing import Route
from ._server.admission import AcceptHook
from ._server.connection import Connection, Disconnect
from ._server.probes import check_path, probe_routes
from ._server.serving import Lifespan
from ._server.static import StaticFiles
from ._signatures import FrameHandler, Hook, Values, describe, mistyped, request_handler
from .brokers import BrokerState

#: What handlers and hooks may take besides a payload (see ``_signatures.Values``).
VALUES = Values(connection=Connection, disconnect=Disconnect)


class HookRegistration:
    """The ``add_*`` methods for hooks, the frame handler and plain-HTTP routes."""

    # Set by App.__init__; listed here for the type checker.
    config: Config
    _routes: dict[str, Route]
    _on_connect: list[Hook]
    _on_disconnect: list[Hook]
    _on_broker_state: list[Callable[[BrokerState], Awaitable[Any]]]
    _lifespans: list[Lifespan]
    _accept_hook: AcceptHook | None
    _frame_handler: FrameHandler | None
    _http: HTTPRoutes
    _asyncapi_path: str | None
    _started: bool

    def _check_open(self, what: str) -> None:
        if self._started:
            raise RegistrationError(
                f"cannot register {what}: this app has already started serving. Register"
                " every handler and hook at import time, before serve()/run()."
            )

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
        shape = "must be `async def accept(request: Request)`"
        params = list(inspect.signature(fn).parameters.values())
        if not (inspect.iscoroutinefunction(fn) and len(params) == 1):
            raise RegistrationError(f"accept hook {describe(fn)} {shape}")
        if (annotated := mistyped(fn, params[0], "accept hook", Request)) is not None:
            # It would be passed the upgrade's Request all the same.
            raise RegistrationError(
                f"accept hook {describe(fn)} {annotated}, but it is passed the upgrade"
                f" request: it {shape}"
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
        handler = request_handler(fn, what, Request)
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
    def http_routes(self) -> list[tuple[str, str]]:
        """``(path, what answers it)`` for every path a plain GET is answered at, by
        path: GET routes, static mounts (``/static/*``), the JavaScript client, the
        AsyncAPI document and the probes (for ``wsroute routes``)."""
        return sorted(self._http.paths() + probe_routes(self.config))

    @property
    def accept_hook(self) -> AcceptHook | None:
        """The accept hook, or ``None`` (for tools: ``wsroute asyncapi``)."""
        return self._accept_hook

    @property
    def has_frame_handler(self) -> bool:
        """Whether a frame handler (:meth:`add_frame_handler`) replaces protocol v1."""
        return self._frame_handler is not None
