"""App options, validated once when the App is created. Defaults are in docs/handlers.md."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._history import History
from ._presence import DEFAULT_PRESENCE_TTL, Presence
from ._proxy import DEFAULT_FORWARDED_ALLOW_IPS, TrustedProxies
from ._topics import TopicRules
from ._wire.deflate import Deflate

_MiB = 1024 * 1024
#: What an app speaks unless told otherwise: the JSON protocol by name (a client that
#: names no subprotocol gets it too) and msgpack (``wsroute._msgpack``).
DEFAULT_SUBPROTOCOLS = ("wsroute.v1.json", "wsroute.v1.msgpack")


class SlowConsumerPolicy(enum.Enum):
    """What happens to a connection whose outbox is full."""

    #: Close the connection with 1008 "slow consumer" (the default): the client
    #: reconnects and resyncs instead of silently missing messages.
    CLOSE = "close"
    #: Discard the oldest queued frame to make room (the client misses old news).
    DROP_OLDEST = "drop_oldest"
    #: Discard the frame being added (the client misses new news).
    DROP_NEWEST = "drop_newest"


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"App option {attribute.name} must be a positive number, not {value!r}")


def _positive_int(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"App option {attribute.name} must be an integer >= 1, not {value!r}")


def _bool(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"App option {attribute.name} must be True or False, not {value!r}")


def _topic(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError("App option default_topic must be a non-empty string or None")


def _probe_path(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith("/") or "?" in value or "#" in value:
        raise ValueError(
            f"App option {attribute.name} must be a path such as '/healthz'"
            f" (starting with '/', no query) or None to turn it off, not {value!r}"
        )


def _optional_positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _positive(_, attribute, value)


def _optional_positive_int(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None:
        _positive_int(_, attribute, value)


def _window(_: Any, attribute: attrs.Attribute[Any], value: tuple[int, float] | None) -> None:
    if value is None:
        return
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or isinstance(value[0], bool)
        or not isinstance(value[0], int)
        or value[0] < 1
        or isinstance(value[1], bool)
        or not isinstance(value[1], int | float)
        or not value[1] > 0
    ):
        raise ValueError(
            f"App option {attribute.name} must be (count, seconds) such as (100, 1.0), or None;"
            f" not {value!r}"
        )


def _origins(
    value: Sequence[str] | Callable[[str], bool] | None,
) -> frozenset[str] | Callable[[str], bool] | None:
    if value is None or callable(value):
        return value
    origins = _strings(value, "allowed_origins", "origins")
    return frozenset(origin.lower().rstrip("/") for origin in origins)


def _slow_consumer(value: SlowConsumerPolicy | str) -> SlowConsumerPolicy:
    """The policy, by itself or by name; the error lists the names (the enum's own
    error only says the value is not a ``SlowConsumerPolicy``)."""
    try:
        return SlowConsumerPolicy(value)
    except (ValueError, TypeError):
        *others, last = (repr(policy.value) for policy in SlowConsumerPolicy)
        raise ValueError(
            f"App option slow_consumer must be {', '.join(others)} or {last}"
            f" (or a wsroute.SlowConsumerPolicy), not {value!r}"
        ) from None


def _compression(value: object) -> Deflate | None:
    if value is None or isinstance(value, Deflate):
        return value
    if value == "deflate":
        return Deflate()
    raise ValueError(
        'App option compression must be None (off), "deflate" or wsroute.Deflate(...),'
        f" not {value!r}"
    )


def _subprotocols(value: Sequence[str]) -> tuple[str, ...]:
    return _strings(value, "subprotocols", "names")


def _strings(value: object, option: str, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of non-empty strings, or the ValueError saying what it is."""
    if isinstance(value, str):
        raise ValueError(f"App option {option} must be a list of {what}, not one string")
    if not isinstance(value, Iterable):
        raise ValueError(f"App option {option} must be a list of {what}, not {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(
                f"App option {option} must be a list of {what} (non-empty strings), not"
                f" one holding {item!r}"
            )
    return items


def _forwarded_allow_ips(value: str | Iterable[str]) -> tuple[str, ...]:
    return TrustedProxies.parse(value).items


def _history(value: Mapping[str, History] | TopicRules[History] | None) -> TopicRules[History]:
    if isinstance(value, TopicRules):
        return value
    if value is None:
        return TopicRules(())
    example = '{"room:*": wsroute.History(size=100, ttl=300)}'
    if not isinstance(value, Mapping):
        raise ValueError(f"App option history must map topic patterns to History, e.g. {example}")
    for pattern, history in value.items():
        if not isinstance(history, History):
            raise ValueError(
                f"App option history maps {pattern!r} to {history!r}, not a History: e.g. {example}"
            )
    return TopicRules(value)


def _presence(
    value: Sequence[str] | Mapping[str, Presence] | TopicRules[Presence] | None,
) -> TopicRules[Presence]:
    if isinstance(value, TopicRules):
        return value
    if value is None:
        return TopicRules(())
    example = '["room:*"] or {"room:*": wsroute.Presence(events=True)}'
    if isinstance(value, Mapping):
        for pattern, presence in value.items():
            if not isinstance(presence, Presence):
                raise ValueError(
                    f"App option presence maps {pattern!r} to {presence!r}, not a Presence:"
                    f" e.g. {example}"
                )
        return TopicRules(value)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"App option presence must list topic patterns, e.g. {example}")
    return TopicRules([(pattern, Presence()) for pattern in value])


@attrs.frozen(kw_only=True)
class Config:
    """Every tunable of an App; see ``App`` for what each one means."""

    default_topic: str | None = attrs.field(default="all", validator=_topic)
    max_concurrency: int = attrs.field(default=1, validator=_positive_int)
    max_queued_requests: int = attrs.field(default=64, validator=_positive_int)
    outbox_size: int = attrs.field(default=1024, validator=_positive_int)
    slow_consumer: SlowConsumerPolicy = attrs.field(
        default=SlowConsumerPolicy.CLOSE, converter=_slow_consumer
    )
    max_message_size: int = attrs.field(default=_MiB, validator=_positive_int)
    compression: Deflate | None = attrs.field(default=None, converter=_compression)
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    close_timeout: float = attrs.field(default=10.0, validator=_positive)
    shutdown_timeout: float = attrs.field(default=10.0, validator=_positive)
    hook_timeout: float = attrs.field(default=5.0, validator=_positive)
    broker_state_events: bool = False
    history: TopicRules[History] = attrs.field(factory=lambda: TopicRules(()), converter=_history)
    presence: TopicRules[Presence] = attrs.field(
        factory=lambda: TopicRules(()), converter=_presence
    )
    presence_ttl: float = attrs.field(default=DEFAULT_PRESENCE_TTL, validator=_positive)
    # Handshake admission.
    allowed_origins: frozenset[str] | Callable[[str], bool] | None = attrs.field(
        default=None, converter=_origins
    )
    subprotocols: tuple[str, ...] = attrs.field(
        default=DEFAULT_SUBPROTOCOLS, converter=_subprotocols
    )
    require_subprotocol: bool = False
    max_connections: int | None = attrs.field(default=10_000, validator=_optional_positive_int)
    max_connections_per_ip: int | None = attrs.field(default=None, validator=_optional_positive_int)
    connect_rate_limit: tuple[int, float] | None = attrs.field(default=None, validator=_window)
    # Per-connection behaviour.
    ping_interval: float | None = attrs.field(default=20.0, validator=_optional_positive)
    ping_timeout: float = attrs.field(default=20.0, validator=_positive)
    rate_limit: tuple[int, float] | None = attrs.field(default=None, validator=_window)
    invalid_message_limit: tuple[int, float] | None = attrs.field(
        default=(10, 60.0), validator=_window
    )
    handler_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    # Plain GET probes (``_server/probes.py``).
    health_path: str | None = attrs.field(default="/healthz", validator=_probe_path)
    ready_path: str | None = attrs.field(default="/readyz", validator=_probe_path)
    metrics_path: str | None = attrs.field(default="/metrics", validator=_probe_path)
    # Behind a reverse proxy (docs/deployment.md#reverse-proxies).
    proxy_headers: bool = attrs.field(default=True, validator=_bool)
    # Normalised ("10.0.0.0/8", "::1", "*"); wsroute._proxy.TrustedProxies checks peers.
    forwarded_allow_ips: tuple[str, ...] = attrs.field(
        default=DEFAULT_FORWARDED_ALLOW_IPS, converter=_forwarded_allow_ips
    )
