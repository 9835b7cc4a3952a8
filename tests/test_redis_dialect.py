"""The two pub/sub dialects a link speaks (``wsroute.brokers.redis.dialect``)."""

from __future__ import annotations

from wsroute.brokers.redis.dialect import CLASSIC, SHARDED, per_slot
from wsroute.brokers.redis.slots import key_slot


def test_the_dialects_name_their_commands_and_pushes() -> None:
    assert (CLASSIC.subscribe, CLASSIC.publish, CLASSIC.message) == (
        b"SUBSCRIBE",
        b"PUBLISH",
        b"message",
    )
    assert (SHARDED.subscribe, SHARDED.unsubscribe, SHARDED.publish) == (
        b"SSUBSCRIBE",
        b"SUNSUBSCRIBE",
        b"SPUBLISH",
    )
    assert (SHARDED.message, SHARDED.subscribed, SHARDED.unsubscribed) == (
        b"smessage",
        b"ssubscribe",
        b"sunsubscribe",
    )
    assert SHARDED.per_slot and not CLASSIC.per_slot


def test_per_slot_groups_channels_of_one_slot_in_order() -> None:
    channels = [b"w:{a}", b"w:{b}", b"x:{a}", b"foo", b"{foo}"]
    groups = list(per_slot(channels))
    assert groups == [[b"w:{a}", b"x:{a}"], [b"w:{b}"], [b"foo", b"{foo}"]]
    for group in groups:
        assert len({key_slot(channel) for channel in group}) == 1
