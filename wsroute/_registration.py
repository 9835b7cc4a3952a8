"""Registering an app's message handlers and events: the ``add_*`` methods, and their checks.

A mixin of :class:`~wsroute.App`, on
:class:`~wsroute._hook_registration.HookRegistration` (hooks, the frame handler,
plain-HTTP routes). Everything a wrong registration can get wrong is checked here,
when the app is built (a duplicate name, a sync function, a missing annotation, a
registration after serving started), so that it fails at import time with a message
naming the fix. The decorators (``_decorators``) are thin wrappers
over these methods: code and decorator registration are one path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import cattrs

from ._declared import ErrorSpec, EventInfo, check_event
from ._errors import RegistrationError
from ._hook_registration import VALUES, HookRegistration
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
from ._signatures import describe


class Registration(HookRegistration):
    """The ``add_*`` methods of an App, and what they registered, read-only."""

    # Set by App.__init__; listed here for the type checker (and in HookRegistration).
    converter: cattrs.Converter
    _info: dict[str, Handler]
    _events: list[EventInfo]

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

    @property
    def events(self) -> list[EventInfo]:
        """The events declared with :meth:`declare_event`, in order."""
        return list(self._events)

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
