"""What the AsyncAPI document and the TypeScript declarations read of an app: a
protocol, so that ``_app`` (which serves the document) imports them without a cycle."""

from __future__ import annotations

from typing import Any, Protocol

from .._config import Config
from .routes import RouteTable


class AppSource(RouteTable, Protocol):
    """What the contracts read of an app (a :class:`wsroute.App` is one): its routes
    and events, its options, and its accept hook."""

    @property
    def config(self) -> Config: ...

    @property
    def accept_hook(self) -> Any: ...

    @property
    def has_frame_handler(self) -> bool: ...


def check_protocol(app: AppSource) -> None:
    """Contracts describe protocol v1, which an app with a frame handler does not speak.

    Raises:
        ValueError: ``app`` has a frame handler.
    """
    if app.has_frame_handler:
        raise ValueError(
            "this app has a frame handler: it receives raw frames instead of protocol v1,"
            " and no contract made from handlers can describe what it speaks"
        )


def presence_events(app: AppSource) -> bool:
    """Whether some topic sends ``wsroute.join`` and ``wsroute.leave`` events."""
    rules = app.config.presence
    # A pattern matches itself; the rule found for it is the one its topics get.
    return any(getattr(rules.get(pattern), "events", False) for pattern in rules.patterns)
