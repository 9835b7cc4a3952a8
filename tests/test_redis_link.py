"""The Redis broker's link (``wsroute.brokers.redis.link``): its two connections to a
real redis-server, the publisher's pipeline, the subscriber's reader, the health
check, and why a link ends. Real time throughout (real sockets), every wait bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import coredis
import pytest
import trio
from coredis.connection import TCPConnection, TCPLocation
from coredis.exceptions import MovedError

from wsroute import BrokerError
from wsroute.brokers import BrokerMessage, BrokerState, RedisBroker
from wsroute.brokers.redis.dialect import SHARDED
from wsroute.brokers.redis.link import Link
from wsroute.brokers.redis.pending import Call, Pending, Script
from wsroute.brokers.redis.slots import key_slot

from .rediscluster import ClusterNode, RedisCluster, own_redis_cluster
from .redisproc import RedisServer, free_port, own_redis_server, redis_server
from .redistools import TIMEOUT, States, next_message, quick, wait_until

__all__ = [
    "own_redis_cluster",
    "own_redis_server",
    "redis_server",
]  # fixtures, imported to be found

# -- what Redis sees ----------------------------------------------------------------------


async def test_one_subscriber_connection_with_refcounted_prefixed_channels(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    async with RedisBroker(server.url, prefix="app1:").connect() as session:
        for topic in ("a", "a", "b", "c"):
            await session.subscribe(topic)
        assert await server.numsub("app1:a", "app1:b", "app1:c", "a") == {
            "app1:a": 1,
            "app1:b": 1,
            "app1:c": 1,
            "a": 0,
        }
        async with server.client() as client:
            pubsub_clients = await client.client_list(type_=coredis.PureToken.PUBSUB)
            assert len(pubsub_clients) == 1  # every topic on one connection
        await session.unsubscribe("a")
        assert await server.numsub("app1:a") == {"app1:a": 1}  # one subscription left
        await session.unsubscribe("a")
        await session.unsubscribe("b")
        await wait_until(
            lambda: _numsub_is(server, {"app1:a": 0, "app1:b": 0, "app1:c": 1}),
            "the last unsubscribe UNSUBSCRIBEs",
        )


async def _numsub_is(server: RedisServer, expected: dict[str, int]) -> bool:
    return await server.numsub(*expected) == expected


async def test_publishes_from_many_tasks_are_pipelined_in_order(
    redis_server: RedisServer,
) -> None:
    broker = RedisBroker(redis_server.url)
    async with broker.connect() as publisher, broker.connect() as subscriber:
        topics = [f"t{i}" for i in range(20)]
        for topic in topics:
            await subscriber.subscribe(topic)

        async def publish_all(topic: str) -> None:
            for n in range(50):
                await publisher.publish(topic, b"%d" % n)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for topic in topics:
                    nursery.start_soon(publish_all, topic)
        received: dict[str, list[bytes]] = {topic: [] for topic in topics}
        for _ in range(20 * 50):
            message = await next_message(subscriber)
            received[message.topic].append(message.data)
    assert received == {topic: [b"%d" % n for n in range(50)] for topic in topics}


# -- noticing trouble ---------------------------------------------------------------------


async def test_subscriber_dropped_by_redis_is_recovered(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsroute")
    server = own_redis_server
    states = States()
    async with quick(server.url).connect(on_state=states) as session:
        await session.subscribe("t")
        async with server.client() as client:
            assert await client.client_kill(type_=coredis.PureToken.PUBSUB) == 1
        await states.wait_for(BrokerState.CONNECTED)
        assert states.seen == [BrokerState.DISCONNECTED, BrokerState.CONNECTED]
        assert await server.numsub("wsroute:t") == {"wsroute:t": 1}
        await session.publish("t", b"still here")
        assert await next_message(session) == BrokerMessage("t", b"still here")
    assert len(states.seen) == 2  # closing the session is not an outage
    messages = [r.getMessage() for r in caplog.records if r.name == "wsroute"]
    lost = [m for m in messages if m.startswith("lost the connection to Redis")]
    assert len(lost) == 1, messages
    assert "the subscribing connection was closed" in lost[0]
    assert any(
        m.startswith("reconnected to Redis") and "resubscribed 1 topic" in m for m in messages
    )
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_hung_redis_bounds_publish_and_is_noticed(own_redis_server: RedisServer) -> None:
    server = own_redis_server
    states = States()
    async with quick(server.url).connect(on_state=states) as session:
        await session.subscribe("t")
        server.pause()
        try:
            start = trio.current_time()
            with trio.fail_after(TIMEOUT), pytest.raises(BrokerError):
                await session.publish("t", b"into a hung Redis")
            assert trio.current_time() - start < 2.0  # publish_timeout=0.5
            await states.wait_for(BrokerState.DISCONNECTED)  # noticed by PING
        finally:
            server.resume()
        await states.wait_for(BrokerState.CONNECTED)
        await session.publish("t", b"resumed")
        # The message published into the hung Redis may or may not have gone out.
        with trio.fail_after(TIMEOUT):
            while (message := await next_message(session)).data != b"resumed":
                assert message.data == b"into a hung Redis"


# -- a link on its own -------------------------------------------------------------------


class Harness:
    """A link to ``url`` with what it is given and what it delivers in view."""

    def __init__(self, url: str, wanted: list[bytes]) -> None:
        self.wanted = wanted
        self.delivered: list[tuple[bytes, bytes]] = []
        self.arrived = trio.Event()
        self.queue, pending = trio.open_memory_channel[Pending](16)
        self.link = Link(
            RedisBroker(url, timeout=1.0)._new_connection,
            wanted=lambda: self.wanted,
            deliver=self._deliver,
            pending=pending,
            timeout=1.0,
            publish_timeout=1.0,
            health_check_interval=30.0,
        )
        self.ready = trio.Event()
        self.reason: str | None = None

    def _deliver(self, channel: bytes, data: bytes) -> None:
        self.delivered.append((channel, data))
        self.arrived.set()
        self.arrived = trio.Event()

    async def run(self) -> None:
        self.reason = await self.link.run(self.ready.set)

    async def publish(self, channel: bytes, data: bytes, *, abandoned: bool = False) -> Pending:
        item = Pending(channel, data)
        item.abandoned = abandoned
        await self.queue.send(item)
        return item

    async def wait_delivered(self, count: int) -> list[tuple[bytes, bytes]]:
        with trio.fail_after(TIMEOUT):
            while len(self.delivered) < count:
                await self.arrived.wait()
        return self.delivered


async def test_a_link_that_cannot_connect_returns_why_and_was_never_ready() -> None:
    harness = Harness(f"redis://127.0.0.1:{free_port()}", [])
    with trio.fail_after(TIMEOUT):
        await harness.run()
    assert not harness.link.ready and not harness.ready.is_set()
    assert harness.link.broken
    assert harness.reason is not None and harness.reason.endswith("Connection refused")


async def test_a_link_subscribes_what_is_wanted_publishes_and_delivers(
    redis_server: RedisServer,
) -> None:
    one, two = b"link-test:one", b"link-test:two"
    harness = Harness(redis_server.url, [one, two])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(harness.run)
        with trio.fail_after(TIMEOUT):
            await harness.ready.wait()
        assert harness.link.subscribed == 2
        assert await redis_server.numsub(one.decode(), two.decode()) == {
            one.decode(): 1,
            two.decode(): 1,
        }
        sent = await harness.publish(one, b"hello")
        with trio.fail_after(TIMEOUT):
            await sent.done.wait()
        assert sent.error is None
        assert await harness.wait_delivered(1) == [(one, b"hello")]
        # A publish its caller gave up on is not sent late.
        await harness.publish(two, b"abandoned", abandoned=True)
        await harness.publish(two, b"after")
        assert await harness.wait_delivered(2) == [(one, b"hello"), (two, b"after")]
        harness.link.unsubscribe(one)
        assert harness.link.subscribed == 1
        await wait_until(lambda: _numsub_is(redis_server, {one.decode(): 0}), "UNSUBSCRIBE")
        harness.link.fail("first reason")
        harness.link.fail("second reason")
    assert harness.reason == "first reason"
    assert harness.link.broken


# -- sharded pub/sub (a cluster's master) -------------------------------------------------


async def _sharded_link(
    node: ClusterNode, on_dropped: Callable[[Sequence[bytes]], None] | None
) -> tuple[Link, list[tuple[bytes, bytes]], trio.MemorySendChannel[Pending]]:
    received: list[tuple[bytes, bytes]] = []
    pending_send, pending = trio.open_memory_channel[Pending](16)
    link = Link(
        lambda: TCPConnection(TCPLocation("127.0.0.1", node.port)),
        wanted=list,
        deliver=lambda channel, data: received.append((channel, data)),
        pending=pending,
        timeout=TIMEOUT,
        publish_timeout=TIMEOUT,
        health_check_interval=10.0,
        dialect=SHARDED,
        on_dropped=on_dropped,
    )
    return link, received, pending_send


async def test_a_sharded_link_subscribes_per_slot_and_hears_a_slot_move_away(
    own_redis_cluster: RedisCluster, nursery: trio.Nursery
) -> None:
    cluster = own_redis_cluster
    node = cluster.owner_of(key_slot(b"foo"))
    dropped: list[bytes] = []
    link, received, pending_send = await _sharded_link(node, dropped.extend)
    ready = trio.Event()
    nursery.start_soon(link.run, ready.set)
    with trio.fail_after(TIMEOUT):
        await ready.wait()
    mine = [
        c for c in (b"foo", b"{foo}.x", b"a", b"b", b"c") if cluster.owner_of(key_slot(c)) is node
    ]
    await link.subscribe(mine)  # channels of several slots: one SSUBSCRIBE each
    assert link.subscribed == len(mine) and not link.broken
    item = Pending(b"foo", b"hello")
    await pending_send.send(item)
    with trio.fail_after(TIMEOUT):
        await item.done.wait()
    assert item.error is None
    await wait_until(lambda: _true(received == [(b"foo", b"hello")]), "SPUBLISH delivered")
    other = next(m for m in cluster.masters() if m is not node)
    await trio.to_thread.run_sync(cluster.migrate_slot, key_slot(b"foo"), other)
    await wait_until(lambda: _true(set(dropped) == {b"foo", b"{foo}.x"}), "the move is heard")
    assert not link.broken and link.subscribed == len(mine) - 2
    link.fail("done")


async def test_a_sharded_link_told_moved_drops_the_channel_or_breaks(
    own_redis_cluster: RedisCluster, nursery: trio.Nursery
) -> None:
    cluster = own_redis_cluster
    owner = cluster.owner_of(key_slot(b"foo"))
    elsewhere = next(m for m in cluster.masters() if m is not owner)
    dropped: list[bytes] = []
    following, _, _ = await _sharded_link(elsewhere, dropped.extend)
    strict, _, _ = await _sharded_link(elsewhere, None)
    for link in (following, strict):
        ready = trio.Event()
        nursery.start_soon(link.run, ready.set)
        with trio.fail_after(TIMEOUT):
            await ready.wait()
        await link.subscribe([b"foo"])  # answered MOVED: returns, not subscribed
    assert dropped == [b"foo"] and not following.broken and following.subscribed == 0
    await wait_until(lambda: _true(strict.broken), "without on_dropped the link breaks")
    following.fail("done")


async def test_an_asking_item_goes_right_after_its_asking_in_the_pipeline(
    own_redis_cluster: RedisCluster, nursery: trio.Nursery
) -> None:
    # Mid-migration, with the key moved: the importing node runs a script only right
    # after ASKING, which counts for one command; the first call also loads the script.
    cluster = own_redis_cluster
    slot = key_slot(b"k")
    source = cluster.owner_of(slot)
    target = next(m for m in cluster.masters() if m is not source)
    source.command("SET", "{k}:a", "moved")
    cluster.start_migration(slot, source, target)
    cluster.move_keys(source, target, "{k}:a")
    link, _, pending_send = await _sharded_link(target, lambda _: None)
    ready = trio.Event()
    nursery.start_soon(link.run, ready.set)
    with trio.fail_after(TIMEOUT):
        await ready.wait()
    get = Script("return redis.call('GET', KEYS[1])")
    plain = Call(get, [b"{k}:a"], [])
    asked, unasked, asked_again = plain.asked(), plain.again(), plain.asked()
    for item in (asked, unasked, asked_again):  # queued at once: one pipeline
        await pending_send.send(item)
    with trio.fail_after(TIMEOUT):
        await asked_again.done.wait()
    assert (asked.error, asked.reply) == (None, b"moved")
    assert isinstance(unasked.error, MovedError)
    assert (asked_again.error, asked_again.reply) == (None, b"moved")
    assert not link.broken
    link.fail("done")


async def _true(value: bool) -> bool:
    return value
