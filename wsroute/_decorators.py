"""The decorator forms of the App's ``add_*`` methods.

A mixin of :class:`~wsroute.App`. Each decorator is a thin wrapper: it calls the
``add_*`` method (``_registration``), where every check lives, and returns the
function unchanged, so code and decorator registration are one path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._declared import ErrorSpec
from ._errors import RegistrationError
from ._registration import Registration
from ._routing import CoalesceSpec, TopicSpec
from ._server.admission import AcceptHook
from ._server.serving import Lifespan
from ._signatures import describe

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
A = TypeVar("A", bound=AcceptHook)


def _given(decorator: str, what: str, value: object) -> None:
    """Refuse ``@app.direct`` written without its parentheses: Python then passes the
    function as the name, and the decorator it returns is never applied, so nothing
    would be registered and the handler would silently never run."""
    if callable(value):
        named = getattr(value, "__name__", "name")
        example = f'"/{named}"' if what == "path" else f'"{named}"'
        raise RegistrationError(
            f"@app.{decorator} needs the {what}: write @app.{decorator}({example}), not"
            f" @app.{decorator}, above {describe(value)}"
        )


def _parenthesised(decorator: str, what: str) -> RegistrationError:
    """The error for ``@app.on_connect()`` written with parentheses: the decorator
    takes the function itself, so Python's own error would be a bare TypeError about a
    missing argument. Raised when the decorator is called, on the app's line."""
    return RegistrationError(
        f"@app.{decorator} is written without parentheses: write @app.{decorator} above"
        f" the {what}, not @app.{decorator}()"
    )


class Decorators(Registration):
    """``@app.direct(...)``, ``@app.on_connect`` and the others."""

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

        _given("direct", "message type", name)

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

        _given("broadcast", "message type", name)

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

        _given("info", "message type", name)

        def register(fn: F) -> F:
            self.add_info(name, fn)
            return fn

        return register

    def get(self, path: str) -> Callable[[F], F]:
        """Decorator form of :meth:`add_get`."""

        _given("get", "path", path)

        def register(fn: F) -> F:
            self.add_get(path, fn)
            return fn

        return register

    def accept(self, fn: A | None = None) -> A:
        """Decorator form of :meth:`add_accept`."""
        if fn is None:
            raise _parenthesised("accept", "accept hook")
        self.add_accept(fn)
        return fn

    def frame_handler(self, fn: F | None = None) -> F:
        """Decorator form of :meth:`add_frame_handler`."""
        if fn is None:
            raise _parenthesised("frame_handler", "frame handler")
        self.add_frame_handler(fn)
        return fn

    def on_connect(self, fn: F | None = None) -> F:
        """Decorator form of :meth:`add_on_connect`."""
        if fn is None:
            raise _parenthesised("on_connect", "on_connect hook")
        self.add_on_connect(fn)
        return fn

    def on_disconnect(self, fn: F | None = None) -> F:
        """Decorator form of :meth:`add_on_disconnect`."""
        if fn is None:
            raise _parenthesised("on_disconnect", "on_disconnect hook")
        self.add_on_disconnect(fn)
        return fn

    def on_broker_state(self, fn: F | None = None) -> F:
        """Decorator form of :meth:`add_on_broker_state`."""
        if fn is None:
            raise _parenthesised("on_broker_state", "on_broker_state hook")
        self.add_on_broker_state(fn)
        return fn

    def lifespan(self, fn: Lifespan | None = None) -> Lifespan:
        """Decorator form of :meth:`add_lifespan`."""
        if fn is None:
            raise _parenthesised("lifespan", "lifespan")
        self.add_lifespan(fn)
        return fn
