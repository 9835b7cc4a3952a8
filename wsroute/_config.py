"""App options, validated once when the App is created. Defaults are in docs/handlers.md."""

from __future__ import annotations

from typing import Any

import attrs

from ._outbox import SlowConsumerPolicy

_MiB = 1024 * 1024


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"App option {attribute.name} must be a positive number, not {value!r}")


def _positive_int(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"App option {attribute.name} must be an integer >= 1, not {value!r}")


def _topic(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError("App option default_topic must be a non-empty string or None")


@attrs.frozen(kw_only=True)
class Config:
    """Every tunable of an App; see ``App`` for what each one means."""

    default_topic: str | None = attrs.field(default="all", validator=_topic)
    max_concurrency: int = attrs.field(default=1, validator=_positive_int)
    max_queued_requests: int = attrs.field(default=64, validator=_positive_int)
    outbox_size: int = attrs.field(default=1024, validator=_positive_int)
    slow_consumer: SlowConsumerPolicy = attrs.field(
        default=SlowConsumerPolicy.CLOSE, converter=SlowConsumerPolicy
    )
    max_message_size: int = attrs.field(default=_MiB, validator=_positive_int)
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    close_timeout: float = attrs.field(default=10.0, validator=_positive)
    shutdown_timeout: float = attrs.field(default=10.0, validator=_positive)
    hook_timeout: float = attrs.field(default=5.0, validator=_positive)
    broker_state_events: bool = False
