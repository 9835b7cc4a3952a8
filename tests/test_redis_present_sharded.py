"""Presence on a Redis Cluster (``wsroute.brokers.redis.present_sharded`` and the
cluster session's ``presence_*`` calls): where its keys live, a node that comes back
while a sweeper takes it, a sweeper cut off after any step of its sweep and two
sweepers racing (each entry reported once), and two apps sharing members through the
cluster. The
conformance checks, the ``presence_*`` ones included, run in
tests/test_redis_cluster.py. Real time, every wait bounded."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from wsroute import App, Connection, Presence, PresenceEntry, Request
from wsroute.brokers import BrokerMessage, BrokerSession, RedisClusterBroker
from wsroute.brokers.redis import present
from wsroute.brokers.redis import present_sharded as sharded
from wsroute.brokers.redis.clustered import ClusterSession
from wsroute.brokers.redis.slots import key_slot
from wsroute.testing import open_app, open_client

from .presencedeath import leave_outlives_the_remover, leave_outlives_the_sweeper
from .rediscluster import RedisCluster, redis_cluster

__all__ = ["redis_cluster"]


def owner_has(cluster: RedisCluster, key: str) -> bool:
    return cluster.owner_of(key_slot(key.encode())).command("EXISTS", key) == 1


async def test_each_key_lives_on_the_shard_of_its_slot(redis_cluster: RedisCluster) -> None:
    async with RedisClusterBroker(redis_cluster.url(), prefix="lay:").connect() as session:
        await session.presence_heartbeat("node-1", 10)
        await session.presence_add("room", "m", "node-1", b"entry", leave=b"leave")
        for key in (
            "lay:{room}:p",
            "lay:{room}:pn",
            "lay:presence:nodes",
            "lay:presence:node:node-1",
        ):
            assert owner_has(redis_cluster, key), key
        owner = redis_cluster.owner_of(key_slot(b"room"))
        assert owner.command("HGETALL", "lay:{room}:p") == ["6:node-1:m", "\x005:entry+leave"]
        assert await session.presence_list("room") == [b"entry"]
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
        # The sweeper finds the dead node and claims it (the first steps of a sweep) ...
        assert await sweeper._run(sharded.dead_call(b"race:"), "finding") == [b"n"]
        topics = await sweeper._run(sharded.claim_call(b"race:", "n", b"me", 5), "claiming")
        assert topics == [b"room"]
        # ... the node beats again before the sweeper reaches its topics ...
        assert not await node_session.presence_heartbeat("n", 10)
        # ... and the rest of the sweep leaves the entries of a node alive again.
        swept = await sweeper._run(sharded.sweep_topic_call(b"race:", "room", "n", 10), "sweeping")
        assert sharded.swept_of(swept) == ([], [])
        assert await sweeper.presence_list("room") == [b"entry"]
        await sweeper._run(sharded.forget_call(b"race:", "n"), "forgetting")
        owner = redis_cluster.owner_of(key_slot(b"race:presence:nodes"))
        assert owner.command("ZSCORE", "race:presence:nodes", "n") is not None


#: One dead node's entries: two members on each of two topics.
DEAD_ENTRIES = [
    (topic, b"%s/%s" % (topic.encode(), m)) for topic in ("a", "b") for m in (b"1", b"2")
]
#: The steps of sweeping that node: find the dead, claim it, (sweep a topic, drop it
#: from the index) twice, release the claim, forget the node.
STEPS = 8
#: Short, so that a cut sweeper's lease (three of them) runs out soon.
PUBLISH_TIMEOUT = 0.2


async def dead_node(cluster: RedisCluster, prefix: str) -> None:
    """Node ``n`` with ``DEAD_ENTRIES``, each with its leave event (``leaves``), its
    heartbeat ended (its keys kept long)."""
    async with RedisClusterBroker(cluster.url(), prefix=prefix).connect() as session:
        await session.presence_heartbeat("n", 10)  # keys kept for ten times that
        for n, (topic, entry) in enumerate(DEAD_ENTRIES):
            await session.presence_add(topic, f"m{n}", "n", entry, leave=b"left " + entry)
        await session.presence_heartbeat("n", 0.05)
    await trio.sleep(0.1)


def leaves(entries: list[tuple[str, bytes]]) -> list[BrokerMessage]:
    """The leave events of ``entries`` of ``dead_node``."""
    return sorted(BrokerMessage(topic, b"left " + entry) for topic, entry in entries)


async def heard(watcher: BrokerSession, sessions: list[BrokerSession]) -> list[BrokerMessage]:
    """What ``watcher`` received on the topics of ``DEAD_ENTRIES`` until a sentinel
    that each of ``sessions`` published on each of them (per-topic order: all that
    they published before), sorted."""
    topics = sorted({topic for topic, _ in DEAD_ENTRIES})
    for session in sessions:
        for topic in topics:
            await session.publish(topic, b"sentinel")
    received: list[BrokerMessage] = []
    sentinels = 0
    with trio.fail_after(5):
        while sentinels < len(sessions) * len(topics):
            message = await watcher.__anext__()
            if message.data == b"sentinel":
                sentinels += 1
            else:
                received.append(message)
    return sorted(received)


def left_in_redis(cluster: RedisCluster, prefix: str) -> list[tuple[str, bytes]]:
    """The dead node's entries still in the topics' hashes (each with its leave)."""
    found = []
    for topic in ("a", "b"):
        key = f"{prefix}{{{topic}}}:p"
        flat = cluster.owner_of(key_slot(key.encode())).command("HGETALL", key)
        for value in flat[1::2]:
            entry, leave = present.unpacked(value.encode())
            assert leave == b"left " + entry, f"{entry!r} kept {leave!r} as its leave"
            found.append((topic, entry))
    return sorted(found)


async def sweep_cut_after(session: ClusterSession, steps: int, monkeypatch: Any) -> None:
    """Sweep with ``session``, cancelled as soon as ``steps`` steps were answered."""
    answered = 0
    run = session._run

    with trio.CancelScope() as scope:

        async def counted(item: Any, what: str, *, abandon: bool = True) -> object:
            nonlocal answered
            reply = await run(item, what, abandon=abandon)
            answered += 1
            if answered == steps:
                scope.cancel()
                await trio.lowlevel.checkpoint()  # cancelled here: the next step is not sent
            return reply

        monkeypatch.setattr(session, "_run", counted)
        await session.presence_sweep()
        raise AssertionError(f"the sweep ended within {steps} steps")
    monkeypatch.undo()
    assert answered == steps


@pytest.mark.parametrize("steps", range(1, STEPS))
async def test_a_sweeper_cut_off_after_any_step_leaves_the_rest_to_the_next(
    redis_cluster: RedisCluster, steps: int, monkeypatch: Any
) -> None:
    prefix = f"cut{steps}:"
    await dead_node(redis_cluster, prefix)
    broker = RedisClusterBroker(redis_cluster.url(), prefix=prefix, publish_timeout=PUBLISH_TIMEOUT)
    async with broker.connect() as first, broker.connect() as second, broker.connect() as watcher:
        assert isinstance(first, ClusterSession)
        await watcher.subscribe_many(["a", "b"])
        await sweep_cut_after(first, steps, monkeypatch)
        remaining = left_in_redis(redis_cluster, prefix)
        # What the first removed before it was cut off is gone, and announced.
        taken = {1: 0, 2: 0, 3: 2, 4: 2}.get(steps, 4)  # each topic sweep takes two
        assert len(remaining) == len(DEAD_ENTRIES) - taken
        gone = sorted(set(DEAD_ENTRIES) - set(remaining))
        assert await heard(watcher, [first]) == leaves(gone)
        if 2 <= steps < 7:  # its claim holds until its lease runs out
            assert await second.presence_sweep() == []
            await trio.sleep(sharded.SWEEP_LEASE * PUBLISH_TIMEOUT + 0.1)
        assert sorted(await second.presence_sweep()) == remaining
        assert await second.presence_sweep() == []
        assert await heard(watcher, [first, second]) == leaves(remaining)  # once each
    assert left_in_redis(redis_cluster, prefix) == []
    for key in (f"{prefix}presence:node:n", f"{prefix}{{a}}:pn", f"{prefix}{{b}}:pn"):
        assert not owner_has(redis_cluster, key), key
    nodes = f"{prefix}presence:nodes"
    assert redis_cluster.owner_of(key_slot(nodes.encode())).command("ZSCORE", nodes, "n") is None


async def test_a_sweeper_whose_connections_are_cut_reports_what_it_removed(
    redis_cluster: RedisCluster, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = "severed:"
    await dead_node(redis_cluster, prefix)
    broker = RedisClusterBroker(redis_cluster.url(), prefix=prefix, publish_timeout=PUBLISH_TIMEOUT)
    async with broker.connect() as watcher, broker.connect() as first:
        assert isinstance(first, ClusterSession)
        await watcher.subscribe_many(["a", "b"])
        answered = 0
        run = first._run

        async def cut_after_the_first_topic(item: Any, what: str, **options: Any) -> object:
            nonlocal answered
            reply = await run(item, what, **options)
            answered += 1
            if answered == 3:  # found, claimed, swept one topic: every connection cut
                for node in redis_cluster.masters():
                    node.command("CLIENT", "KILL", "TYPE", "normal")
            return reply

        monkeypatch.setattr(first, "_run", cut_after_the_first_topic)
        swept = await first.presence_sweep()
        monkeypatch.undo()
        assert len(swept) == 2 and {topic for topic, _ in swept} == {DEAD_ENTRIES[0][0]}
        assert "a sweep stopped midway" in caplog.text
        await trio.sleep(sharded.SWEEP_LEASE * PUBLISH_TIMEOUT + 0.1)
        async with broker.connect() as second:
            rest = await second.presence_sweep()
            assert sorted(swept + rest) == sorted(DEAD_ENTRIES)
            # Each entry's leave was published once, by the script that removed it:
            # the first's before its connections were cut (the watcher's subscribing
            # connections are no "normal" clients: they stayed), the rest by the second.
            assert await heard(watcher, [second]) == leaves(DEAD_ENTRIES)


async def test_two_sweepers_racing_report_each_entry_once(redis_cluster: RedisCluster) -> None:
    prefix = "racing:"
    for node in ("n1", "n2", "n3"):
        async with RedisClusterBroker(redis_cluster.url(), prefix=prefix).connect() as session:
            await session.presence_heartbeat(node, 10)
            for topic in ("a", "b", "c"):
                await session.presence_add(topic, "m", node, f"{node}@{topic}".encode())
            await session.presence_heartbeat(node, 0.05)
    await trio.sleep(0.1)
    broker = RedisClusterBroker(redis_cluster.url(), prefix=prefix)
    reports: list[list[tuple[str, bytes]]] = []
    async with broker.connect() as first, broker.connect() as second:

        async def sweep(session: Any) -> None:
            reports.append(await session.presence_sweep())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sweep, first)
            nursery.start_soon(sweep, second)
        # A node one sweeper held is left to its lease; sweep until nothing is left.
        with trio.fail_after(10):
            while any(left_in_redis_of(redis_cluster, prefix, t) for t in "abc"):
                await trio.sleep(0.05)
                reports.append(await first.presence_sweep())
    reported = [pair for report in reports for pair in report]
    expected = [(t, f"{n}@{t}".encode()) for n in ("n1", "n2", "n3") for t in "abc"]
    assert sorted(reported) == sorted(expected)  # each once


def left_in_redis_of(cluster: RedisCluster, prefix: str, topic: str) -> int:
    key = f"{prefix}{{{topic}}}:p"
    return int(cluster.owner_of(key_slot(key.encode())).command("HLEN", key))


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


async def test_a_leave_reaches_subscribers_when_the_remover_dies_right_after(
    redis_cluster: RedisCluster,
) -> None:
    await leave_outlives_the_remover(RedisClusterBroker(redis_cluster.url(), prefix="died:"))


async def test_a_leave_reaches_subscribers_when_the_sweeper_dies_right_after(
    redis_cluster: RedisCluster,
) -> None:
    broker = RedisClusterBroker(redis_cluster.url(), prefix="swept:")
    await leave_outlives_the_sweeper(broker, 0.3)
