"""The cluster session (``wsroute.brokers.redis.clustered``) while a slot migrates: a
call whose keys already moved is answered ``ASK`` and sent at once, after ``ASKING``,
to the importing node, and a kept event (or a presence event) is still delivered;
``SPUBLISH`` is served by the old owner until the migration ends; a topic without keys
yet has them made blank on the importing node (``blanks.py``) and is served at once.
Each test has a cluster of its own, as it moves a slot. Real time, every wait
bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from wsroute import App, BrokerError, Connection, Presence, PresenceEntry, Request
from wsroute.brokers import BrokerMessage, History, RedisClusterBroker
from wsroute.brokers.redis.slots import key_slot
from wsroute.testing import open_app, open_client

from .rediscluster import ClusterNode, RedisCluster, running_cluster

TOPIC = "busy"
SLOT = key_slot(TOPIC.encode())
#: Far longer than an answer takes, so that "well before publish_timeout" shows.
PUBLISH_TIMEOUT = 5.0
HISTORY = History(size=100, ttl=60)


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with running_cluster() as fresh:
        yield fresh


def asking_calls(node: ClusterNode) -> int:
    """How many ``ASKING`` commands ``node`` ran since its start."""
    stats: str = node.command("INFO", "commandstats")
    line = next((ln for ln in stats.splitlines() if ln.startswith("cmdstat_asking:")), "")
    return int(line.split("calls=")[1].split(",")[0]) if line else 0


async def receive(session: object, count: int) -> list[BrokerMessage]:
    with trio.fail_after(5):
        return [await session.__anext__() for _ in range(count)]  # type: ignore[attr-defined]


async def test_calls_on_moved_keys_are_asked_of_the_importing_node_at_once(
    cluster: RedisCluster,
) -> None:
    source = cluster.owner_of(SLOT)
    target = next(node for node in cluster.nodes if node is not source)
    broker = RedisClusterBroker(cluster.url(), publish_timeout=PUBLISH_TIMEOUT)
    async with broker.connect() as publisher, broker.connect() as listener:
        await listener.subscribe(TOPIC)
        for n in (1, 2):
            await publisher.publish_kept(TOPIC, b"before-%d" % n, HISTORY)
        await publisher.presence_heartbeat("node-1", 10)
        await publisher.presence_add(TOPIC, "m", "node-1", b"entry")
        await receive(listener, 2)
        # Mid-migration: every key of the slot (history and presence) already moved.
        cluster.start_migration(SLOT, source, target)
        keys = source.command("CLUSTER", "GETKEYSINSLOT", SLOT, 100)
        assert len(keys) == 4
        cluster.move_keys(source, target, *keys)
        assert source.command("CLUSTER", "COUNTKEYSINSLOT", SLOT) == 0

        started = trio.current_time()
        position = await publisher.publish_kept(TOPIC, b"during", HISTORY)
        page = await publisher.read_history(TOPIC, HISTORY)
        listed = await publisher.presence_list(TOPIC)
        assert trio.current_time() - started < 1.0  # not retried until publish_timeout
        assert asking_calls(target) >= 3
        assert position.offset == 3
        assert [(m.data, m.position.offset) for m in page.messages] == [
            (b"before-1", 1),
            (b"before-2", 2),
            (b"during", 3),
        ]
        assert listed == [b"entry"]
        # A script flushed from the importing node is sent as EVAL, still after ASKING.
        target.command("SCRIPT", "FLUSH")
        again = await publisher.read_history(TOPIC, HISTORY)
        assert [m.position.offset for m in again.messages] == [1, 2, 3]
        assert trio.current_time() - started < 1.0
        # Kept on the importing node, delivered where the subscribers still are.
        (message,) = await receive(listener, 1)
        assert (message.data, message.position) == (b"during", position)

        await trio.to_thread.run_sync(cluster.finish_migration, SLOT, source, target)
        with trio.fail_after(5):
            last = await publisher.publish_kept(TOPIC, b"after", HISTORY)
        assert last.offset == 4
        page = await publisher.read_history(TOPIC, HISTORY)
        assert [m.position.offset for m in page.messages] == [1, 2, 3, 4]  # once each
        assert target.command("EXISTS", "wsroute:{busy}:s") == 1


async def test_spublish_is_served_by_the_old_owner_until_the_migration_ends(
    cluster: RedisCluster,
) -> None:
    # Sharded channels are no keys: Redis never answers ASK to SPUBLISH, so a plain
    # publish needs no ASKING and reaches the subscribers, who are still there.
    source = cluster.owner_of(SLOT)
    target = next(node for node in cluster.nodes if node is not source)
    async with RedisClusterBroker(cluster.url()).connect() as session:
        await session.publish_kept(TOPIC, b"kept", HISTORY)  # a key in the slot
        await session.subscribe(TOPIC)
        cluster.start_migration(SLOT, source, target)
        cluster.move_keys(source, target, *source.command("CLUSTER", "GETKEYSINSLOT", SLOT, 10))
        assert source.command("SPUBLISH", "wsroute:{busy}", "raw") == 1  # no ASK
        await session.publish(TOPIC, b"plain")
        messages = await receive(session, 2)
        assert [m.data for m in messages] == [b"raw", b"plain"]
        assert asking_calls(target) == 0


async def test_a_new_topics_first_kept_event_is_kept_while_its_slot_migrates(
    cluster: RedisCluster,
) -> None:
    # No keys yet: the owner answers ASK, the importing node TRYAGAIN (a script naming
    # two keys it does not hold); the session makes them blank there and asks again.
    source = cluster.owner_of(SLOT)
    target = next(node for node in cluster.nodes if node is not source)
    broker = RedisClusterBroker(cluster.url(), publish_timeout=PUBLISH_TIMEOUT)
    async with broker.connect() as publisher, broker.connect() as listener:
        await listener.subscribe(TOPIC)
        cluster.start_migration(SLOT, source, target)
        started = trio.current_time()
        first = await publisher.publish_kept(TOPIC, b"first", HISTORY)
        assert trio.current_time() - started < 1.0  # not retried until publish_timeout
        assert first.offset == 1 and first.epoch
        assert asking_calls(target) >= 3  # the call, its two keys, the call again
        assert source.command("CLUSTER", "COUNTKEYSINSLOT", SLOT) == 0
        assert sorted(target.command("CLUSTER", "GETKEYSINSLOT", SLOT, 10)) == [
            "wsroute:{busy}:m",
            "wsroute:{busy}:s",
        ]
        assert "" not in target.asking("HKEYS", "wsroute:{busy}:m")  # no blank left
        assert target.asking("PTTL", "wsroute:{busy}:s") > 0
        page = await publisher.read_history(TOPIC, HISTORY)
        assert [(m.data, m.position) for m in page.messages] == [(b"first", first)]
        await publisher.publish(TOPIC, b"sentinel")
        received = await receive(listener, 2)
        assert [(m.data, m.position) for m in received] == [(b"first", first), (b"sentinel", None)]

        await trio.to_thread.run_sync(cluster.finish_migration, SLOT, source, target)
        with trio.fail_after(5):
            second = await publisher.publish_kept(TOPIC, b"second", HISTORY)
        assert (second.offset, second.epoch) == (2, first.epoch)
        page = await publisher.read_history(TOPIC, HISTORY)
        assert [(m.data, m.position.offset) for m in page.messages] == [
            (b"first", 1),
            (b"second", 2),
        ]
        assert page.position == second


async def test_a_new_topics_first_presence_entry_is_added_while_its_slot_migrates(
    cluster: RedisCluster,
) -> None:
    source = cluster.owner_of(SLOT)
    target = next(node for node in cluster.nodes if node is not source)
    broker = RedisClusterBroker(cluster.url(), publish_timeout=PUBLISH_TIMEOUT)
    async with broker.connect() as session, broker.connect() as listener:
        await listener.subscribe(TOPIC)
        await session.presence_heartbeat("node-1", 10)
        cluster.start_migration(SLOT, source, target)
        started = trio.current_time()
        assert await session.presence_list(TOPIC) == []  # its keys are made blank
        await session.presence_add(TOPIC, "m", "node-1", b"entry", join=b"+m", leave=b"-m")
        assert await session.presence_list(TOPIC) == [b"entry"]
        assert trio.current_time() - started < 1.0  # not retried until publish_timeout
        assert source.command("CLUSTER", "COUNTKEYSINSLOT", SLOT) == 0
        assert target.asking("HKEYS", "wsroute:{busy}:p") == ["6:node-1:m"]  # no blank
        await session.publish(TOPIC, b"sentinel")
        assert [m.data for m in await receive(listener, 2)] == [b"+m", b"sentinel"]

        await trio.to_thread.run_sync(cluster.finish_migration, SLOT, source, target)
        with trio.fail_after(5):
            assert await session.presence_list(TOPIC) == [b"entry"]
            await session.presence_add(TOPIC, "n", "node-1", b"more")
        assert sorted(await session.presence_list(TOPIC)) == [b"entry", b"more"]
        assert source.command("CLUSTER", "COUNTKEYSINSLOT", SLOT) == 0


async def test_app_presence_shows_a_new_rooms_first_member_while_its_slot_migrates(
    cluster: RedisCluster,
) -> None:
    room, slot = "room:1", key_slot(b"room:1")
    source = cluster.owner_of(slot)
    target = next(node for node in cluster.nodes if node is not source)
    broker = RedisClusterBroker(cluster.url(), publish_timeout=PUBLISH_TIMEOUT)
    app = App(broker=broker, presence={"room:*": Presence(events=True)}, presence_ttl=5)

    @app.accept
    async def accept(request: Request) -> str | None:
        return request.query.get("user")

    @app.direct("join")
    async def join(name: str, conn: Connection) -> str:
        await conn.subscribe(name)
        return conn.id

    async with open_app(app), open_client(app, query={"user": "ann"}) as ann:
        cluster.start_migration(slot, source, target)
        with trio.fail_after(1):  # not retried until publish_timeout
            ann_id = await ann.request("join", room)
            assert await app.presence(room) == [PresenceEntry(ann_id, "ann")]
        assert source.command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0

        await trio.to_thread.run_sync(cluster.finish_migration, slot, source, target)
        with trio.fail_after(5):
            while True:  # refused while the app's subscription follows the slot
                try:
                    members = await app.presence(room)
                    break
                except BrokerError:
                    await trio.sleep(0.05)
        assert members == [PresenceEntry(ann_id, "ann")]


async def test_presence_events_reach_the_subscribers_while_the_slot_migrates(
    cluster: RedisCluster,
) -> None:
    # On the owner, MIGRATING, with the keys there, the scripts run and publish as
    # always; on the importing node, after ASK, they return the events instead,
    # which the session publishes on the owner, where the subscribers are.
    source = cluster.owner_of(SLOT)
    target = next(node for node in cluster.nodes if node is not source)
    broker = RedisClusterBroker(cluster.url(), publish_timeout=PUBLISH_TIMEOUT)
    async with broker.connect() as session, broker.connect() as listener:
        await listener.subscribe(TOPIC)
        await session.presence_heartbeat("node-1", 10)
        await session.presence_heartbeat("dying", 10)
        await session.presence_add(TOPIC, "m1", "node-1", b"1", join=b"+m1", leave=b"-m1")
        await session.presence_add(TOPIC, "d", "dying", b"d", leave=b"-d")
        await session.presence_add(TOPIC, "quiet", "node-1", b"q")  # no events
        assert [m.data for m in await receive(listener, 1)] == [b"+m1"]

        cluster.start_migration(SLOT, source, target)
        await session.presence_add(TOPIC, "m2", "node-1", b"2", join=b"+m2", leave=b"-m2")
        assert await session.presence_remove(TOPIC, "quiet", "node-1")
        assert [m.data for m in await receive(listener, 1)] == [b"+m2"]
        assert asking_calls(target) == 0  # served by the owner

        keys = source.command("CLUSTER", "GETKEYSINSLOT", SLOT, 100)
        cluster.move_keys(source, target, *keys)
        await session.presence_add(TOPIC, "m3", "node-1", b"3", join=b"+m3", leave=b"-m3")
        assert await session.presence_remove(TOPIC, "m1", "node-1")
        await session.presence_heartbeat("dying", 0.05)
        await trio.sleep(0.1)
        assert await session.presence_sweep() == [(TOPIC, b"d")]
        assert asking_calls(target) >= 3
        assert sorted(await session.presence_list(TOPIC)) == [b"2", b"3"]
        await session.publish(TOPIC, b"sentinel")
        received = [m.data for m in await receive(listener, 4)]
        assert received == [b"+m3", b"-m1", b"-d", b"sentinel"]  # each once
