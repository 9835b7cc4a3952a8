"""Presence on a Redis Cluster (``wsroute.brokers.redis.present_sharded`` and the
cluster session's ``presence_*`` calls): where its keys live, a node that comes back
while a sweeper takes it, and two apps sharing members through the cluster. The
conformance checks, the ``presence_*`` ones included, run in
tests/test_redis_cluster.py. Real time, every wait bounded."""

from __future__ import annotations

from typing import Any

import trio

from wsroute import App, Connection, Presence, PresenceEntry, Request
from wsroute.brokers import RedisClusterBroker
from wsroute.brokers.redis import present_sharded as sharded
from wsroute.brokers.redis.clustered import ClusterSession
from wsroute.brokers.redis.slots import key_slot
from wsroute.testing import open_app, open_client

from .rediscluster import RedisCluster, redis_cluster

__all__ = ["redis_cluster"]


def owner_has(cluster: RedisCluster, key: str) -> bool:
    return cluster.owner_of(key_slot(key.encode())).command("EXISTS", key) == 1


async def test_each_key_lives_on_the_shard_of_its_slot(redis_cluster: RedisCluster) -> None:
    async with RedisClusterBroker(redis_cluster.url(), prefix="lay:").connect() as session:
        await session.presence_heartbeat("node-1", 10)
        await session.presence_add("room", "m", "node-1", b"entry")
        for key in (
            "lay:{room}:p",
            "lay:{room}:pn",
            "lay:presence:nodes",
            "lay:presence:node:node-1",
        ):
            assert owner_has(redis_cluster, key), key
        owner = redis_cluster.owner_of(key_slot(b"room"))
        assert owner.command("HGETALL", "lay:{room}:p") == ["6:node-1:m", "entry"]
        assert owner.command("ZSCORE", "lay:{room}:pn", "node-1") is not None
        assert owner.command("PTTL", "lay:{room}:p") > 90_000  # ten ttls
        assert await session.presence_remove("room", "m", "node-1")
        assert not owner_has(redis_cluster, "lay:{room}:p")
        assert not owner_has(redis_cluster, "lay:presence:node:node-1")  # no topic left


async def test_a_node_back_while_a_sweeper_takes_it_keeps_its_entries(
    redis_cluster: RedisCluster,
) -> None:
    broker = RedisClusterBroker(redis_cluster.url(), prefix="race:")
    async with broker.connect() as node_session, broker.connect() as sweeper:
        assert isinstance(sweeper, ClusterSession)
        await node_session.presence_heartbeat("n", 0.05)
        await node_session.presence_add("room", "m", "n", b"entry")
        await trio.sleep(0.1)  # its heartbeat ended
        # The sweeper claims the dead node (the first step of a sweep) ...
        claimed = await sweeper._run(sharded.claim_call(b"race:"), "claiming")
        assert claimed == [b"n"]
        # ... the node beats again before the sweeper reaches its topics ...
        assert not await node_session.presence_heartbeat("n", 10)
        # ... and the rest of the sweep leaves the entries of a node alive again.
        topics = await sweeper._run(sharded.take_index_call(b"race:", "n"), "taking")
        assert topics == [b"room"]
        swept = await sweeper._run(sharded.sweep_topic_call(b"race:", "room", "n"), "sweeping")
        assert swept == []
        assert await sweeper.presence_list("room") == [b"entry"]


def room_app(url: str) -> App:
    broker = RedisClusterBroker(url, prefix="apps:")
    app = App(broker=broker, presence={"room:*": Presence(events=True)}, presence_ttl=5)

    @app.accept
    async def accept(request: Request) -> str | None:
        return request.query.get("user")

    @app.direct("join")
    async def join(room: str, conn: Connection) -> str:
        await conn.subscribe(f"room:{room}")
        return conn.id

    return app


async def test_two_apps_on_a_cluster_see_each_others_members(redis_cluster: RedisCluster) -> None:
    first, second = room_app(redis_cluster.url()), room_app(redis_cluster.url())

    def by_connection(entries: list[PresenceEntry]) -> list[Any]:
        return sorted(entries, key=lambda e: e.connection)

    async with open_app(first), open_app(second):
        async with open_client(second, query={"user": "bob"}) as bob:
            bob_id = await bob.request("join", "1")
            async with open_client(first, query={"user": "ann"}) as ann:
                ann_id = await ann.request("join", "1")
                expected = by_connection(
                    [PresenceEntry(ann_id, "ann"), PresenceEntry(bob_id, "bob")]
                )
                for app in (first, second):
                    assert by_connection(await app.presence("room:1")) == expected
            left = await bob.expect_event("wsroute.leave")
            assert left.data["connection"] == ann_id
            assert await first.presence("room:1") == [PresenceEntry(bob_id, "bob")]
        assert await second.presence("room:1") == []
