"""The local Redis Cluster of the cluster tests forms, moves slots and fails over."""

from __future__ import annotations

import pytest

from .rediscluster import SLOTS, ClusterError, RedisCluster, own_redis_cluster, redis_cluster

__all__ = ["own_redis_cluster", "redis_cluster"]


def test_every_slot_is_served_and_every_node_agrees(redis_cluster: RedisCluster) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3 == len(redis_cluster.nodes)
    owners = {redis_cluster.owner_of(slot) for slot in (0, SLOTS // 3, SLOTS - 1)}
    assert owners == set(masters)
    for node in redis_cluster.nodes:
        assert node.info()["cluster_state"] == "ok"
        assert node.pid is not None
    ports = ",".join(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes)
    assert redis_cluster.url() == f"redis+cluster://{ports}"


def test_a_slot_moves_with_its_keys(own_redis_cluster: RedisCluster) -> None:
    slot = 12182  # the slot of "foo"
    source = own_redis_cluster.owner_of(slot)
    source.command("SET", "foo", "bar")
    target = next(m for m in own_redis_cluster.masters() if m is not source)
    own_redis_cluster.migrate_slot(slot, target)
    assert own_redis_cluster.owner_of(slot) is target
    assert target.command("GET", "foo") == "bar"
    with pytest.raises(ClusterError, match=f"MOVED {slot} 127.0.0.1:{target.port}"):
        source.command("GET", "foo")


def test_a_replica_takes_over_from_a_killed_master(own_redis_cluster: RedisCluster) -> None:
    master = own_redis_cluster.owner_of(0)
    (replica,) = own_redis_cluster.replicas_of(master)
    own_redis_cluster.kill(master)
    own_redis_cluster.failover(replica)
    assert own_redis_cluster.owner_of(0) is replica
    assert master not in own_redis_cluster.masters()
    own_redis_cluster.wait_ok()
