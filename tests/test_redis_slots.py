"""Redis Cluster's key space (``wsroute.brokers.redis.slots``): CRC16/XMODEM, hash tags,
and the topology read from ``CLUSTER SLOTS``."""

from __future__ import annotations

import pytest

from wsroute.brokers.redis.slots import SLOTS, Address, Topology, crc16, key_slot

from .rediscluster import RedisCluster, command, redis_cluster

__all__ = ["redis_cluster"]


def test_crc16_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@pytest.mark.parametrize(
    ("key", "slot"),
    [(b"foo", 12182), (b"bar", 5061), (b"{foo}.bar", 12182), (b"a{foo}b{bar}", 12182)],
)
def test_known_slots(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


def test_keys_with_one_hash_tag_share_a_slot() -> None:
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"wsroute:{room}") == key_slot(b"wsroute:{room}:s") == key_slot(b"room")


@pytest.mark.parametrize("key", [b"{}", b"{}foo", b"foo{", b"foo}{", b"x{}y"])
def test_an_empty_or_unclosed_tag_hashes_the_whole_key(key: bytes) -> None:
    assert key_slot(key) == crc16(key) % SLOTS


def test_slots_agree_with_redis(redis_cluster: RedisCluster) -> None:
    port = redis_cluster.nodes[0].port
    for key in (b"foo", b"wsroute:{room-7}", b"{}x", b"x{y}z", "caf\u00e9".encode()):
        assert key_slot(key) == command(port, "CLUSTER", "KEYSLOT", key), key


def test_the_topology_of_a_running_cluster(redis_cluster: RedisCluster) -> None:
    seed = Address("127.0.0.1", redis_cluster.nodes[0].port)
    reply = command(seed.port, "CLUSTER", "SLOTS")
    topology = Topology.parse(reply, seed)
    assert topology.complete
    assert topology.masters == {Address("127.0.0.1", node.port) for node in redis_cluster.masters()}
    for slot in (0, 5000, 12182, SLOTS - 1):
        assert topology.owner(slot) == Address("127.0.0.1", redis_cluster.owner_of(slot).port)


def test_a_partial_topology_says_who_serves_what() -> None:
    a, b = Address("10.0.0.1", 7000), Address("::1", 7001)
    topology = Topology([(100, 199, b), (0, 99, a)])
    assert (topology.owner(0), topology.owner(99), topology.owner(150)) == (a, a, b)
    assert topology.owner(200) is None and not topology.complete
    assert str(b) == "[::1]:7001"


def test_topologies_are_equal_when_every_range_has_the_same_master() -> None:
    a, b = Address("h", 1), Address("h", 2)
    one = Topology([(0, 99, a), (100, SLOTS - 1, b)])
    assert one == Topology([(100, SLOTS - 1, b), (0, 99, a)])  # in any order
    assert one != Topology([(0, 100, a), (101, SLOTS - 1, b)])  # a slot moved
    assert one != Topology([(0, 99, b), (100, SLOTS - 1, b)])
    assert one != "topology"


def test_an_unknown_host_is_the_seeds() -> None:
    seed = Address("cache.internal", 7000)
    topology = Topology.parse([[0, SLOTS - 1, [b"", 7001, b"id"]]], seed)
    assert topology.owner(0) == Address("cache.internal", 7001)


@pytest.mark.parametrize("reply", [None, [[0]], [[0, 10, [b"h", b"port"]]]])
def test_an_unexpected_reply_is_refused(reply: object) -> None:
    with pytest.raises(ValueError, match="unexpected CLUSTER SLOTS"):
        Topology.parse(reply, Address("h", 1))
