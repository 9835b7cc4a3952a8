"""Blank keys (``wsroute.brokers.redis.blanks``): every cluster call naming two keys
says how to make them; a key is made only where it is missing, with an expiry, and
taken by every script for a missing key, so that a topic whose keys were made blank
is a new topic. Made here on the slot's owner, with no migration (the migrations
themselves are in tests/test_redis_clustered.py). Real time."""

from __future__ import annotations

import pytest
import trio

from wsroute.brokers import History, RedisClusterBroker
from wsroute.brokers.redis import blanks, kept, pages
from wsroute.brokers.redis import present_sharded as sharded
from wsroute.brokers.redis.known import Known
from wsroute.brokers.redis.slots import key_slot

from .rediscluster import ClusterNode, RedisCluster, redis_cluster

__all__ = ["redis_cluster"]

HISTORY = History(size=100, ttl=60, meta_ttl=3600)
PREFIX = "blank:"


def owner(cluster: RedisCluster, key: str) -> ClusterNode:
    return cluster.owner_of(key_slot(key.encode()))


def make(cluster: RedisCluster, key: str, kind: bytes, ms: int = 60_000) -> int:
    node = owner(cluster, key)
    reply: int = node.command("EVAL", blanks.MAKE.source, 1, key, kind, ms)
    return reply


def history_keys(topic: str) -> tuple[str, str]:
    return f"{PREFIX}{{{topic}}}:s", f"{PREFIX}{{{topic}}}:m"


def test_cluster_calls_naming_two_keys_carry_their_blanks_through_every_copy() -> None:
    history = History(size=10, ttl=10, meta_ttl=3600)
    stream, meta = b"p:{t}:s", b"p:{t}:m"
    made = ((stream, blanks.STREAM, b"11000"), (meta, blanks.HASH, b"11000"))
    known = Known()
    call = kept.publish_call(b"p:", "t", b"p:{t}", b"d", history, b"s", known, sharded=True)
    assert call.blanks == made
    assert call.again().blanks == call.asked().blanks == made
    assert kept.publish_call(b"p:", "t", b"p:t", b"d", history, b"s", known).blanks == ()
    read = pages.read_call(b"p:", "t", history, None, None, b"s", sharded=True)
    assert read.blanks == made and read.asked().blanks == made
    entries, nodes, keep = b"p:{t}:p", b"p:{t}:pn", b"%d" % (10 * 5000)
    presence = ((entries, blanks.HASH, keep), (nodes, blanks.ZSET, keep))
    add = sharded.add_call(b"p:", "t", "m", "n", b"e", b"", 5)
    assert add.blanks == add.asked().blanks == add.again().blanks == presence
    assert sharded.list_call(b"p:", "t", 5).blanks == presence
    assert sharded.beat_topic_call(b"p:", "t", "n", b"1", 5).blanks == presence
    assert sharded.sweep_topic_call(b"p:", "t", "n", 5).blanks == presence
    assert sharded.remove_call(b"p:", "t", "m", "n").blanks == ()  # one key: no TRYAGAIN


def test_a_key_is_made_blank_only_if_missing_and_with_an_expiry(
    redis_cluster: RedisCluster,
) -> None:
    stream, meta = history_keys("once")
    node = owner(redis_cluster, stream)
    assert make(redis_cluster, stream, blanks.STREAM, 5000) == 1
    assert make(redis_cluster, stream, blanks.STREAM) == 0  # left alone
    assert node.command("XLEN", stream) == 0
    assert 0 < node.command("PTTL", stream) <= 5000
    assert make(redis_cluster, meta, blanks.HASH) == 1
    assert node.command("HGETALL", meta) == ["", ""]
    nodes = f"{PREFIX}{{once}}:pn"
    assert make(redis_cluster, nodes, blanks.ZSET) == 1
    assert node.command("ZRANGE", nodes, 0, -1, "WITHSCORES") == ["", "0"]
    with pytest.raises(Exception, match="unknown kind"):
        make(redis_cluster, f"{PREFIX}{{once}}:x", b"list")


async def test_blank_history_keys_are_a_new_topic_to_a_kept_publish(
    redis_cluster: RedisCluster,
) -> None:
    stream, meta = history_keys("kept")
    node = owner(redis_cluster, stream)
    async with RedisClusterBroker(redis_cluster.url(), prefix=PREFIX).connect() as session:
        old = await session.publish_kept("kept", b"old life", HISTORY)
        node.command("DEL", stream, meta)
        for key, kind in (stream, blanks.STREAM), (meta, blanks.HASH):
            assert make(redis_cluster, key, kind) == 1
        # The session knows the old epoch: the hash, without one, says it is gone.
        first = await session.publish_kept("kept", b"first", HISTORY)
        assert first.offset == 1 and first.epoch != old.epoch
        fields = node.command("HKEYS", meta)
        assert sorted(fields) == sorted(["e", f"o{first.epoch}", "s", "m"])  # no ""
        assert node.command("PTTL", meta) > 3600_000  # the publish's, not the blank's
        assert node.command("PTTL", stream) > 60_000
        page = await session.read_history("kept", HISTORY)
        assert [(m.data, m.position) for m in page.messages] == [(b"first", first)]
        second = await session.publish_kept("kept", b"second", HISTORY)
        assert (second.offset, second.epoch) == (2, first.epoch)


async def test_blank_history_keys_are_a_new_topic_to_a_read(redis_cluster: RedisCluster) -> None:
    stream, meta = history_keys("read")
    node = owner(redis_cluster, stream)
    for key, kind in (stream, blanks.STREAM), (meta, blanks.HASH):
        make(redis_cluster, key, kind)
    async with RedisClusterBroker(redis_cluster.url(), prefix=PREFIX).connect() as session:
        page = await session.read_history("read", HISTORY)
        assert page.position.offset == 0 and page.position.epoch and page.messages == []
        assert node.command("HKEYS", meta) == ["e"]
        assert node.command("EXISTS", stream) == 0  # a new epoch starts without one
        first = await session.publish_kept("read", b"first", HISTORY)
        assert (first.offset, first.epoch) == (1, page.position.epoch)


async def test_a_stream_left_without_its_hash_goes_with_a_blank_hash(
    redis_cluster: RedisCluster,
) -> None:
    # The hash lost (evicted, say) and the stream kept: a new epoch, offsets from 1,
    # so the old entries, whose ids are higher, go first.
    stream, meta = history_keys("orphan")
    node = owner(redis_cluster, stream)
    async with RedisClusterBroker(redis_cluster.url(), prefix=PREFIX).connect() as session:
        for n in range(3):
            old = await session.publish_kept("orphan", b"old %d" % n, HISTORY)
        node.command("DEL", meta)
        assert make(redis_cluster, meta, blanks.HASH) == 1
        first = await session.publish_kept("orphan", b"first", HISTORY)
        assert first.offset == 1 and first.epoch != old.epoch
        page = await session.read_history("orphan", HISTORY)
        assert [(m.data, m.position) for m in page.messages] == [(b"first", first)]


async def test_a_blank_stream_under_a_living_epoch_takes_the_next_offset(
    redis_cluster: RedisCluster,
) -> None:
    # The stream gone (expired before the hash, as its ttl is shorter), the hash kept.
    stream, meta = history_keys("gap")
    node = owner(redis_cluster, stream)
    async with RedisClusterBroker(redis_cluster.url(), prefix=PREFIX).connect() as session:
        one = await session.publish_kept("gap", b"1", HISTORY)
        node.command("DEL", stream)
        assert node.command("HGET", meta, "e") == one.epoch
        assert make(redis_cluster, stream, blanks.STREAM, 66_000) == 1
        two = await session.publish_kept("gap", b"2", HISTORY)
        assert (two.offset, two.epoch) == (2, one.epoch)
        assert node.command("PTTL", stream) > 0
        page = await session.read_history("gap", HISTORY)
        assert [(m.data, m.position) for m in page.messages] == [(b"2", two)]


async def test_blank_presence_keys_are_a_new_topic(redis_cluster: RedisCluster) -> None:
    entries, nodes = f"{PREFIX}{{room}}:p", f"{PREFIX}{{room}}:pn"
    node = owner(redis_cluster, entries)
    for key, kind in (entries, blanks.HASH), (nodes, blanks.ZSET):
        make(redis_cluster, key, kind, 5000)
    broker = RedisClusterBroker(redis_cluster.url(), prefix=PREFIX)
    async with broker.connect() as session, broker.connect() as listener:
        await listener.subscribe("room")
        assert await session.presence_list("room") == []
        await session.presence_heartbeat("n1", 10)
        await session.presence_add("room", "m", "n1", b"entry", join=b"+m")
        assert node.command("HKEYS", entries) == ["2:n1:m"]  # the blank field went
        assert node.command("PTTL", entries) > 5000  # the addition's expiry
        assert await session.presence_list("room") == [b"entry"]
        with trio.fail_after(5):
            assert (await listener.__anext__()).data == b"+m"
        assert await session.presence_remove("room", "m", "n1")
        assert node.command("EXISTS", entries) == 0  # gone with its last entry
