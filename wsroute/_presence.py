"""Who is on a topic: the option, the entries and their counts.

A connection subscribed to a topic with presence (``App(presence=["room:*"])``) has
one entry there, ``{connection, user, meta}``, kept by the broker for every process
to read; ``meta`` is what the app set as ``conn.presence_meta`` before subscribing.
Entries are JSON, made here once per join: brokers keep bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import attrs
import orjson

#: Seconds within which the entries of a process that died without cleaning up are
#: gone (its heartbeat expires, and another process sweeps them), by default.
DEFAULT_PRESENCE_TTL = 30.0


@attrs.frozen(kw_only=True)
class Presence:
    """Presence on the topics of a pattern: ``App(presence={"room:*": Presence(events=True)})``.

    Args:
        events: send the topic's subscribers a ``wsroute.join`` event when a connection
            joins it and a ``wsroute.leave`` event when it leaves (once, also for a
            process that died), each with the entry as data.
    """

    events: bool = False


@attrs.frozen
class PresenceEntry:
    """One connection present on a topic.

    Attributes:
        connection: its id (``conn.id``).
        user: its user id (``conn.user_id``), ``None`` when anonymous.
        meta: what the app set as ``conn.presence_meta`` (JSON values).
    """

    connection: str
    user: str | None
    meta: Any = None


class PresenceStats(NamedTuple):
    """How many are on a topic: connections, and distinct users among them (anonymous
    connections count as connections only)."""

    connections: int
    users: int


def encode_entry(connection: str, user: str | None, meta: Any) -> bytes:
    """An entry as the broker keeps it.

    Raises:
        TypeError: ``meta`` is not JSON (``conn.presence_meta`` must be).
    """
    try:
        return orjson.dumps({"connection": connection, "user": user, "meta": meta})
    except TypeError as exc:
        raise TypeError(f"conn.presence_meta must hold JSON values: {exc}") from None


def decode_entry(data: bytes) -> dict[str, Any]:
    """An entry from the broker, as clients receive it.

    Raises:
        ValueError: not an entry (a bug elsewhere).
    """
    entry = orjson.loads(data)
    if not isinstance(entry, dict) or not isinstance(entry.get("connection"), str):
        raise ValueError(f"not a presence entry: {data[:80]!r}")
    return entry


def stats(entries: Iterable[dict[str, Any]]) -> PresenceStats:
    """The counts of decoded entries."""
    connections = 0
    users = set()
    for entry in entries:
        connections += 1
        if entry.get("user") is not None:
            users.add(entry["user"])
    return PresenceStats(connections, len(users))
