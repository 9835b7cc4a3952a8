"""The cluster broker's links to the shards (``wsroute.brokers.redis.shards``) while the
cluster changes under them: a master killed and its replica promoted, a master lost and
back, a slot migrated while publishing. Real redis-server processes, real time, every
wait bounded. The failover and migration tests count what was lost and duplicated,
print the counts (docs/brokers.md quotes them) and assert bounds.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio

from wsroute import BrokerError
from wsroute.brokers import BrokerSession, BrokerState, RedisClusterBroker
from wsroute.brokers.redis.slots import key_slot

from .rediscluster import ClusterNode, RedisCluster, own_redis_cluster, running_cluster
from .redistools import TIMEOUT, States

__all__ = ["own_redis_cluster"]

#: Topics enough to land on every shard.
TOPICS = [f"room-{n}" for n in range(24)]


def quick(cluster: RedisCluster, **options: Any) -> RedisClusterBroker:
    """A broker that notices trouble fast, for outage tests."""
    options.setdefault("timeout", 0.5)
    options.setdefault("health_check_interval", 0.3)
    options.setdefault("publish_timeout", 0.5)
    return RedisClusterBroker(cluster.url(), **options)


class Traffic:
    """A publisher sending numbered messages round the topics at a steady pace, and a
    subscriber's tally: what was accepted, refused, received."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.accepted: list[bytes] = []
        self.refused = 0
        self.received: Counter[bytes] = Counter()

    async def publish(self, session: BrokerSession, stop: trio.Event) -> None:
        n = 0
        while not stop.is_set():
            data = b"%d" % n
            try:
                await session.publish(self.topics[n % len(self.topics)], data)
                self.accepted.append(data)
            except BrokerError:
                self.refused += 1
            n += 1
            await trio.sleep(0.002)

    async def receive(self, session: BrokerSession) -> None:
        async for message in session:
            self.received[message.data] += 1

    async def settle(self, tail: list[bytes]) -> None:
        """Wait until each of ``tail`` arrived (bounded)."""
        with trio.fail_after(TIMEOUT):
            while any(data not in self.received for data in tail):
                await trio.sleep(0.01)

    def report(self, what: str) -> tuple[int, int]:
        lost = sum(1 for data in self.accepted if data not in self.received)
        duplicated = sum(count - 1 for count in self.received.values() if count > 1)
        print(
            f"{what}: {len(self.accepted)} accepted, {self.refused} refused,"
            f" {lost} accepted but lost, {duplicated} duplicated"
        )
        return lost, duplicated


async def run_through(
    cluster: RedisCluster, topics: list[str], change: Any, *, expect_loss: bool
) -> tuple[Traffic, States, States]:
    """Publish on ``topics`` while ``change()`` (blocking) runs in a thread; then go on
    until both sessions are connected again and the last messages arrived."""
    traffic = Traffic(topics)
    pub_states, sub_states = States(), States()
    broker = quick(cluster)
    async with (
        broker.connect(on_state=pub_states) as pub,
        broker.connect(on_state=sub_states) as sub,
        trio.open_nursery() as nursery,
    ):
        await sub.subscribe_many(topics)
        stop = trio.Event()
        nursery.start_soon(traffic.receive, sub)
        nursery.start_soon(traffic.publish, pub, stop)
        await trio.sleep(0.2)
        await trio.to_thread.run_sync(change)
        if expect_loss:
            await pub_states.wait_for(BrokerState.CONNECTED)
            await sub_states.wait_for(BrokerState.CONNECTED)
        count = len(traffic.accepted)
        with trio.fail_after(TIMEOUT):  # publishing goes on after the change
            while len(traffic.accepted) < count + 100:
                await trio.sleep(0.01)
        stop.set()
        await traffic.settle(traffic.accepted[-50:])
        nursery.cancel_scope.cancel()
    return traffic, pub_states, sub_states


async def test_a_killed_master_fails_over_to_its_replica(own_redis_cluster: RedisCluster) -> None:
    cluster = own_redis_cluster
    master = cluster.owner_of(key_slot(TOPICS[0].encode()))
    (replica,) = cluster.replicas_of(master)

    def crash_and_promote() -> None:
        cluster.kill(master)
        cluster.failover(replica)

    traffic, pub_states, sub_states = await run_through(
        cluster, TOPICS, crash_and_promote, expect_loss=True
    )
    lost, duplicated = traffic.report("master killed, replica promoted")
    assert (
        pub_states.seen[:2]
        == sub_states.seen[:2]
        == [
            BrokerState.DISCONNECTED,
            BrokerState.CONNECTED,
        ]
    )
    assert duplicated == 0
    # Lost: what a shard accepted in the moment before the subscriber's link noticed.
    assert lost <= 50
    assert cluster.owner_of(key_slot(TOPICS[0].encode())) is replica


async def test_a_slot_migrates_while_publishing(own_redis_cluster: RedisCluster) -> None:
    cluster = own_redis_cluster
    topic = TOPICS[0]
    slot = key_slot(topic.encode())
    source = cluster.owner_of(slot)
    target = next(node for node in cluster.masters() if node is not source)
    traffic, pub_states, sub_states = await run_through(
        cluster, [topic], lambda: cluster.migrate_slot(slot, target), expect_loss=False
    )
    lost, duplicated = traffic.report("slot migrated")
    assert pub_states.seen == sub_states.seen == []  # followed without reconnecting
    assert duplicated == 0
    assert lost <= 20
    assert cluster.owner_of(slot) is target


async def test_a_lost_master_is_reported_until_it_returns() -> None:
    with running_cluster(masters=3) as cluster:
        master = cluster.owner_of(key_slot(b"t"))
        states = States()
        async with quick(cluster).connect(on_state=states) as session:
            await session.subscribe("t")
            cluster.kill(master)
            await states.wait_for(BrokerState.DISCONNECTED)
            with pytest.raises(BrokerError, match="no reachable master"):
                await session.publish("t", b"while lost")
            await master.astart()  # same port and node id: it serves its slots again
            await states.wait_for(BrokerState.CONNECTED)
            await session.publish("t", b"back")
            with trio.fail_after(TIMEOUT):
                message = await session.__anext__()
            assert message.data == b"back"


async def test_a_master_gone_for_good_ends_the_session() -> None:
    with running_cluster(masters=3) as cluster:
        node: ClusterNode = cluster.masters()[0]
        with trio.fail_after(TIMEOUT), pytest.raises(BrokerError, match="could not reconnect"):
            async with quick(cluster, give_up_after=1.0).connect() as session:
                await session.subscribe("t")
                cluster.kill(node)
                await trio.sleep_forever()
