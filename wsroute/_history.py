"""What a broker keeps of a topic's past: the policy, positions and pages.

A topic with history numbers its events: each publish gets the next ``offset`` (1,
2, ...) within the topic's ``epoch``, a random name that changes whenever the
broker loses what it kept (a restart of the memory broker, Redis flushed, the
topic idle past ``meta_ttl``). An offset means something only with its epoch: a
client that saw ``(57, "k3JqbW1x")`` and finds the epoch changed knows its gap
cannot be filled. Brokers keep positions and bytes, nothing of what the bytes say.
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

import attrs

#: The most events one topic may keep: history is read in one piece on recovery.
MAX_SIZE = 1_000_000
#: How long a topic's offset and epoch outlive its last publish, by default.
DEFAULT_META_TTL = 30 * 24 * 3600.0


def _size(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        raise ValueError(f"History size must be an integer from 1 to {MAX_SIZE}, not {value!r}")


def _seconds(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"History {attribute.name} must be a positive number of seconds")


@attrs.frozen(kw_only=True, cache_hash=True)  # a key of the brokers' caches, per publish
class History:
    """How much of a topic's past the broker keeps, for recovery and ``app.history``:
    ``App(history={"room:*": History(size=100, ttl=300)})``.

    Args:
        size: the most events kept per topic (the newest).
        ttl: seconds an event is kept after it was published.
        meta_ttl: seconds a topic's offset and epoch outlive its last publish (30
            days by default). A topic idle for longer starts over with a new epoch,
            and a client coming back to it is told it could not recover.

    Raises:
        ValueError: a bound is not a positive number, or ``meta_ttl < ttl``.
    """

    size: int = attrs.field(validator=_size)
    ttl: float = attrs.field(validator=_seconds)
    meta_ttl: float = attrs.field(default=DEFAULT_META_TTL, validator=_seconds)

    def __attrs_post_init__(self) -> None:
        if self.meta_ttl < self.ttl:
            raise ValueError(
                f"History meta_ttl ({self.meta_ttl:g} s) must be at least its ttl"
                f" ({self.ttl:g} s): the offsets must outlive the events they number"
            )


class Position(NamedTuple):
    """Where a topic's history stands: an event's offset and the epoch it counts in.

    Offset 0 is the position before the first event of an epoch.
    """

    offset: int
    epoch: str


def new_epoch() -> str:
    """A fresh epoch: 8 URL-safe characters, random."""
    return secrets.token_urlsafe(6)


class HistoryEvent(NamedTuple):
    """One event of a topic's history, as ``app.history`` returns it."""

    type: str
    #: Its data as sent to clients (JSON values; ``bytes`` where the event held them).
    data: Any
    offset: int


class TopicHistory(NamedTuple):
    """What ``app.history`` returns: events oldest first, and where the topic stands."""

    #: The topic's latest position when read (offset of its newest event).
    position: Position
    events: list[HistoryEvent]
