"""The two kinds of Redis pub/sub a link speaks: classic, where a message reaches the
subscribers of the whole Redis (or of every node of a cluster: it is broadcast), and
sharded (Redis 7), where a channel lives on the one shard that serves its hash slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .slots import key_slot


class Dialect(NamedTuple):
    """The commands and push kinds of one kind of pub/sub."""

    subscribe: bytes
    unsubscribe: bytes
    publish: bytes
    #: Push kinds: a message, a subscription confirmed, a subscription ended.
    message: bytes
    subscribed: bytes
    unsubscribed: bytes
    #: Whether one subscribe command may only name channels of one hash slot.
    per_slot: bool


#: Classic pub/sub: a message reaches the subscribers of every node it is published on.
CLASSIC = Dialect(
    b"SUBSCRIBE", b"UNSUBSCRIBE", b"PUBLISH", b"message", b"subscribe", b"unsubscribe", False
)
#: Sharded pub/sub (Redis 7): a channel lives on the shard that serves its slot.
SHARDED = Dialect(
    b"SSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"SPUBLISH",
    b"smessage",
    b"ssubscribe",
    b"sunsubscribe",
    True,
)


def per_slot(channels: Sequence[bytes]) -> Iterable[list[bytes]]:
    """``channels`` in groups of one hash slot each, as one ``SSUBSCRIBE`` takes them."""
    groups: dict[int, list[bytes]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel), []).append(channel)
    return groups.values()
