"""History on the Redis broker (``wsroute.brokers.redis.kept``, ``pages`` and the session's
``publish_kept``/``read_history``) against real redis-server processes: the key
layout, the framing on the channel, epochs that change when Redis forgets, the
scripts in the publishers' pipeline, and recovery end to end through two
``wsroute run`` processes sharing one Redis.

The conformance checks, the ``history_*`` ones included, run on Redis in
tests/test_redis_broker.py (``test_conformance``). Real time throughout (real
sockets); every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import trio

from wsroute import BrokerError, History, Position
from wsroute.brokers import BrokerMessage, BrokerState, HistoryPage, RedisBroker
from wsroute.brokers.redis import kept
from wsroute.brokers.redis.known import Known
from wsroute.brokers.redis.link import Link
from wsroute.brokers.redis.pending import Pending

from .cliproc import Server, StartServer, start, write
from .redisproc import RedisServer, own_redis_server, redis_server
from .redistools import TIMEOUT, States, next_message, quick
from .wsclient import WSClient, connect

__all__ = ["own_redis_server", "redis_server", "start"]  # fixtures, imported to be found

HISTORY = History(size=100, ttl=60, meta_ttl=3600)


def offsets(page: HistoryPage) -> list[int]:
    return [m.position.offset for m in page.messages if m.position is not None]


# -- the key layout, on its own ---------------------------------------------------------


def test_the_keys_of_a_topic_share_one_hash_tag() -> None:
    assert kept.keys(b"app:", "room:1") == [b"app:{room:1}:s", b"app:{room:1}:m"]
    assert kept.keys(b"", "a}b") == [b"{a}b}:s", b"{a}b}:m"]  # still one tag: "a"


# -- what Redis holds and carries -------------------------------------------------------


class RawChannel:
    """A link subscribed to one channel: what Redis carries on it, byte for byte."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._arrived = trio.Event()

    def deliver(self, channel: bytes, data: bytes) -> None:
        self.payloads.append(data)
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait_for(self, count: int) -> list[bytes]:
        with trio.fail_after(TIMEOUT):
            while len(self.payloads) < count:
                await self._arrived.wait()
        return self.payloads


@asynccontextmanager
async def raw_channel(url: str, channel: bytes) -> AsyncIterator[RawChannel]:
    raw = RawChannel()
    _, pending = trio.open_memory_channel[Pending](1)
    link = Link(
        RedisBroker(url)._new_connection,
        wanted=lambda: [channel],
        deliver=raw.deliver,
        pending=pending,
        timeout=TIMEOUT,
        publish_timeout=TIMEOUT,
        health_check_interval=30.0,
    )
    ready = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, ready.set)
        with trio.fail_after(TIMEOUT):
            await ready.wait()
        yield raw
        link.fail("done")


async def test_framing_on_the_channel(redis_server: RedisServer) -> None:
    async with (
        RedisBroker(redis_server.url, prefix="frame:").connect() as session,
        raw_channel(redis_server.url, b"frame:t") as raw,
    ):
        await session.subscribe("t")
        await session.publish("t", b"\x04plain")
        await session.publish("t", b"\x05plain")
        await session.publish("t", b"{}")
        position = await session.publish_kept("t", b"\x04kept", HISTORY)
        epoch = position.epoch.encode()
        assert await raw.wait_for(4) == [
            b"\x05\x04plain",
            b"\x05\x05plain",
            b"{}",
            b"\x041:" + epoch + b"\n\x04kept",
        ]
        received = [await next_message(session) for _ in range(4)]
        assert received == [
            BrokerMessage("t", b"\x04plain"),
            BrokerMessage("t", b"\x05plain"),
            BrokerMessage("t", b"{}"),
            BrokerMessage("t", b"\x04kept", Position(1, position.epoch)),
        ]


async def test_long_and_non_ascii_topics_and_large_events_are_kept_whole(
    redis_server: RedisServer,
) -> None:
    # The channel travels in the packed context (msgpack str 8/16 beyond 31/255 bytes).
    long = "é" * 200  # 400 bytes: a str 16 in the context
    data = bytes(range(256)) * 300  # binary, beyond any str 16
    async with RedisBroker(redis_server.url, prefix="big:").connect() as session:
        await session.subscribe(long)
        first = await session.publish_kept(long, data, HISTORY)
        second = await session.publish_kept(long, b"2", HISTORY)
        assert (first.offset, second) == (1, Position(2, first.epoch))
        assert await next_message(session) == BrokerMessage(long, data, first)
        assert await next_message(session) == BrokerMessage(long, b"2", second)
        page = await session.read_history(long, HISTORY)
        assert [m.data for m in page.messages] == [data, b"2"]


async def test_a_malformed_kept_payload_is_dropped_and_logged(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with RedisBroker(redis_server.url, prefix="bad:").connect() as session:
        await session.subscribe("t")
        async with redis_server.client() as client:
            await client.publish("bad:t", "\x04no position here")
        await session.publish("t", b"sentinel")
        assert await next_message(session) == BrokerMessage("t", b"sentinel")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dropped a message on topic 't'" in w for w in warnings), warnings


async def test_a_topic_is_a_stream_and_a_hash_with_expiries(redis_server: RedisServer) -> None:
    async with RedisBroker(redis_server.url, prefix="keys:").connect() as session:
        first = await session.publish_kept("room:1", b"one", HISTORY)
        second = await session.publish_kept("room:1", b"two", HISTORY)
    assert (first.offset, second) == (1, Position(2, first.epoch))
    async with redis_server.client() as client:
        stream, meta = "keys:{room:1}:s", "keys:{room:1}:m"
        assert await client.type(stream) == "stream"
        state = await client.hgetall(meta)
        assert state.keys() == {"e", f"o{first.epoch}", "s", "m"}  # o<epoch>: its count
        assert (state["e"], state[f"o{first.epoch}"]) == (first.epoch, "2")
        assert len(first.epoch) == 12 and int(first.epoch, 16) >= 0  # hex digits
        entries = await client.xrange(stream)
        ids = [entry.identifier.split("-") for entry in entries]
        assert [offset for offset, _ in ids] == ["1", "2"]  # <offset>-<Redis' clock in ms>
        now = time.time() * 1000  # the same machine's clock as Redis'
        assert all(abs(now - int(ms)) < 10_000 for _, ms in ids)
        assert [entry.field_values for entry in entries] == [{"d": "one"}, {"d": "two"}]
        # Each key expires up to a tenth past its ttl after the last publish.
        assert 60_000 < await client.pttl(stream) <= 66_000
        assert 3_600_000 < await client.pttl(meta) <= 3_960_000
        assert int(state["s"]) - int(ids[-1][1]) <= 66_000


async def test_expiries_are_renewed_only_when_less_than_the_ttl_is_left(
    redis_server: RedisServer,
) -> None:
    stream, meta = "renew:{t}:s", "renew:{t}:m"
    broker = RedisBroker(redis_server.url, prefix="renew:")
    async with broker.connect() as session, redis_server.client() as client:
        first = await session.publish_kept("t", b"1", HISTORY)
        # Plenty left: a publish does not touch the expiry (set by hand, to see it kept).
        await client.pexpire(stream, 500_000)
        await session.publish_kept("t", b"2", HISTORY)
        assert await client.pttl(stream) > 66_000
        # Less than the ttl left by the deadline the session learnt: renewed.
        session._known.remember("t", (first.epoch.encode(), b"1", b"1", first.epoch))
        await session.publish_kept("t", b"3", HISTORY)
        assert 60_000 < await client.pttl(stream) <= 66_000
        assert 3_600_000 < await client.pttl(meta) <= 3_960_000
        # The stream gone (expired) while the hash lives on: the next publish makes it
        # anew, with its expiry, and the offsets go on.
        await client.delete([stream])
        session._known.remember("t", (first.epoch.encode(), b"1", b"1", first.epoch))
        assert (await session.publish_kept("t", b"4", HISTORY)).offset == 4
        assert 60_000 < await client.pttl(stream) <= 66_000
    # A session that knows nothing of the topic goes by the deadlines in the hash.
    async with broker.connect() as other, redis_server.client() as client:
        await client.delete([stream])
        await client.hset(meta, {"s": "1"})
        assert (await other.publish_kept("t", b"5", HISTORY)).offset == 5
        assert 60_000 < await client.pttl(stream) <= 66_000


async def test_a_publish_checks_the_epoch_it_knows_by_counting_under_it(
    redis_server: RedisServer,
) -> None:
    meta = "known:{t}:m"
    broker = RedisBroker(redis_server.url, prefix="known:")
    async with (
        broker.connect() as stale,
        broker.connect() as other,
        redis_server.client() as client,
    ):
        old = await stale.publish_kept("t", b"old", HISTORY)
        await client.delete([meta])  # the hash lost (evicted, say), the stream kept
        new = await other.publish_kept("t", b"1", HISTORY)
        assert new.offset == 1 and new.epoch != old.epoch
        assert await other.publish_kept("t", b"2", HISTORY) == Position(2, new.epoch)
        # The stale session counts under its old epoch, finds it is not the hash's,
        # undoes that and counts under the hash's.
        assert await stale.publish_kept("t", b"3", HISTORY) == Position(3, new.epoch)
        assert (await client.hgetall(meta)).keys() == {"e", f"o{new.epoch}", "s", "m"}
        page = await other.read_history("t", HISTORY)
        assert [(m.data, m.position) for m in page.messages] == [
            (b"1", Position(1, new.epoch)),
            (b"2", Position(2, new.epoch)),
            (b"3", Position(3, new.epoch)),
        ]
        # Its epoch known, the hash gone: a new epoch, never a hash without one.
        await client.delete([meta])
        again = await stale.publish_kept("t", b"1", HISTORY)
        assert again.offset == 1 and again.epoch not in (old.epoch, new.epoch)
        assert (await client.hgetall(meta)).keys() == {"e", f"o{again.epoch}", "s", "m"}
        assert offsets(await other.read_history("t", HISTORY)) == [1]


async def test_a_call_that_learns_nothing_new_is_answered_its_offset_alone(
    redis_server: RedisServer,
) -> None:
    async with redis_server.client() as client:
        known, replies = Known(), []
        for n in range(3):
            call = kept.publish_call(b"bare:", "t", b"bare:t", b"%d" % n, HISTORY, b"s", known)
            reply = await client.eval(call.script.source, call.keys, call.args)
            replies.append(reply)
            if isinstance(reply, list):  # as the broker learns it, but from text
                _, epoch, stream_deadline, hash_deadline, _ = reply
                entry = (epoch.encode(), stream_deadline.encode(), hash_deadline.encode(), epoch)
                known.remember("t", entry)
        assert isinstance(replies[0], list) and replies[0][0] == 1  # all of it, first
        assert replies[1:] == [2, 3]  # then nothing new: the offset alone
        # Less than the ttl left: renewed, and the reply says the new deadlines.
        known.remember("t", (entry[0], b"1", entry[2], entry[3]))
        call = kept.publish_call(b"bare:", "t", b"bare:t", b"3", HISTORY, b"s", known)
        reply = await client.eval(call.script.source, call.keys, call.args)
        assert isinstance(reply, list) and reply[0] == 4 and reply[2] != "1"


async def test_the_stream_is_trimmed_about_size_and_reads_are_exact(
    redis_server: RedisServer,
) -> None:
    bounded = History(size=150, ttl=60)
    async with (
        RedisBroker(redis_server.url, prefix="trim:").connect() as session,
        redis_server.client() as client,
    ):
        for n in range(1, 401):
            await session.publish_kept("t", b"%d" % n, bounded)
        assert 150 <= await client.xlen("trim:{t}:s") < 400  # MAXLEN ~: whole nodes
        assert offsets(await session.read_history("t", bounded)) == list(range(251, 401))
        page = await session.read_history("t", bounded, since=10, limit=3)
        assert offsets(page) == [251, 252, 253]
        assert [m.data for m in page.messages] == [b"251", b"252", b"253"]


# -- epochs ---------------------------------------------------------------------------


async def test_a_flushed_redis_means_a_new_epoch_from_offset_1(redis_server: RedisServer) -> None:
    async with (
        RedisBroker(redis_server.url, prefix="flush:").connect() as session,
        redis_server.client() as client,
    ):
        for n in range(3):
            before = await session.publish_kept("t", b"%d" % n, HISTORY)
        assert before.offset == 3
        await client.flushall()
        page = await session.read_history("t", HISTORY)
        assert page.position.offset == 0 and page.messages == []
        assert page.position.epoch != before.epoch
        assert await session.publish_kept("t", b"after", HISTORY) == Position(
            1, page.position.epoch
        )
        await client.flushall()  # and when a publish comes first
        again = await session.publish_kept("t", b"again", HISTORY)
        assert again.offset == 1 and again.epoch not in (before.epoch, page.position.epoch)
        assert offsets(await session.read_history("t", HISTORY)) == [1]


async def test_a_restarted_redis_without_persistence_means_a_new_epoch(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    states = States()
    async with quick(server.url).connect(on_state=states) as session:
        for n in range(2):
            before = await session.publish_kept("t", b"%d" % n, HISTORY)
        server.kill()
        await states.wait_for(BrokerState.DISCONNECTED)
        with trio.fail_after(0.1), pytest.raises(BrokerError, match="unreachable"):
            await session.publish_kept("t", b"lost", HISTORY)
        with trio.fail_after(0.1), pytest.raises(BrokerError, match="unreachable"):
            await session.read_history("t", HISTORY)
        await server.astart()
        await states.wait_for(BrokerState.CONNECTED)
        after = await session.publish_kept("t", b"back", HISTORY)
        assert after.offset == 1 and after.epoch != before.epoch


async def test_a_topic_idle_past_its_meta_ttl_starts_over(redis_server: RedisServer) -> None:
    brief = History(size=10, ttl=0.1, meta_ttl=0.2)
    async with RedisBroker(redis_server.url, prefix="idle:").connect() as session:
        before = await session.publish_kept("t", b"x", brief)
        await trio.sleep(0.3)
        page = await session.read_history("t", brief)
        assert page.position.offset == 0 and page.position.epoch != before.epoch


# -- scripts in the pipeline --------------------------------------------------------------


async def test_kept_and_plain_publishes_from_many_tasks_keep_their_order(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    topics = [f"t{i}" for i in range(10)]
    async with (
        RedisBroker(server.url).connect() as publisher,
        RedisBroker(server.url).connect() as subscriber,
        server.client() as client,
    ):
        await subscriber.subscribe_many(topics)
        await client.config_resetstat()

        async def publish(topic: str) -> None:
            for n in range(20):  # plain, kept, plain, kept, ...
                if n % 2:
                    await publisher.publish_kept(topic, b"%d" % n, HISTORY)
                else:
                    await publisher.publish(topic, b"%d" % n)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for topic in topics:
                    nursery.start_soon(publish, topic)
        received: dict[str, list[BrokerMessage]] = {topic: [] for topic in topics}
        for _ in range(len(topics) * 20):
            message = await next_message(subscriber)
            received[message.topic].append(message)
        stats: Any = await client.info("commandstats")
    for topic, messages in received.items():
        assert [m.data for m in messages] == [b"%d" % n for n in range(20)], topic
        positions = [m.position for m in messages]
        assert [p.offset if p else None for p in positions] == [
            None if n % 2 == 0 else (n + 1) // 2 for n in range(20)
        ], topic
    assert stats["cmdstat_script|load"]["calls"] == 1  # once for the connection
    assert stats["cmdstat_evalsha"]["calls"] == len(topics) * 10


async def test_a_flushed_script_cache_falls_back_to_eval(redis_server: RedisServer) -> None:
    async with (
        RedisBroker(redis_server.url, prefix="noscript:").connect() as session,
        redis_server.client() as client,
    ):
        assert (await session.publish_kept("t", b"1", HISTORY)).offset == 1
        await client.script_flush()
        assert (await session.publish_kept("t", b"2", HISTORY)).offset == 2
        assert offsets(await session.read_history("t", HISTORY)) == [1, 2]
        await client.script_flush()
        assert offsets(await session.read_history("t", HISTORY, since=1)) == [2]


async def test_a_failing_script_is_a_broker_error_and_the_link_stays_up(
    redis_server: RedisServer,
) -> None:
    states = States()
    async with (
        RedisBroker(redis_server.url, prefix="wrong:").connect(on_state=states) as session,
        redis_server.client() as client,
    ):
        await client.hset("wrong:{t}:m", {"e": "epoch", "oepoch": "1"})
        await client.set("wrong:{t}:s", "not a stream")
        with pytest.raises(
            BrokerError, match=r"keeping an event in Redis failed: .*wrong kind of value"
        ):
            await session.publish_kept("t", b"x", HISTORY)
        with pytest.raises(
            BrokerError, match=r"reading history from Redis failed: .*wrong kind of value"
        ):
            await session.read_history("t", HISTORY)
        await session.subscribe("other")
        await session.publish("other", b"still fine")
        assert await next_message(session) == BrokerMessage("other", b"still fine")
    assert states.seen == []


async def test_a_second_subscriber_waits_for_the_first_subscribe_to_be_confirmed(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    returned: list[str] = []
    async with RedisBroker(server.url).connect() as session:

        async def subscribe(name: str) -> None:
            await session.subscribe("t")
            returned.append(name)

        server.pause()  # the first SUBSCRIBE goes out, its confirmation cannot come
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(subscribe, "first")
                await trio.sleep(0.05)
                nursery.start_soon(subscribe, "second")  # counted: nothing to send
                await trio.sleep(0.2)
                assert returned == []
                server.resume()
        finally:
            server.resume()
        assert sorted(returned) == ["first", "second"]
        assert await server.numsub("wsroute:t") == {"wsroute:t": 1}


async def test_what_is_published_during_a_subscribe_and_read_is_read_or_delivered(
    redis_server: RedisServer,
) -> None:
    """The order recovery relies on: subscribe (returns once Redis confirmed it), then
    read. Every kept event is then in the read or delivered afterwards: no gap."""
    total = 300
    roomy = History(size=1000, ttl=60)  # nothing trimmed: the read starts at 1
    async with (
        RedisBroker(redis_server.url, prefix="seam:").connect() as publisher,
        RedisBroker(redis_server.url, prefix="seam:").connect() as reader,
    ):
        half = trio.Event()

        async def publish() -> None:
            for n in range(1, total + 1):
                await publisher.publish_kept("t", b"%d" % n, roomy)
                if n == total // 2:
                    half.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            with trio.fail_after(TIMEOUT):
                await half.wait()
            await reader.subscribe("t")
            page = await reader.read_history("t", roomy, since=0)
        read = offsets(page)
        assert read == list(range(1, page.position.offset + 1))
        live: list[int] = []
        while not live or live[-1] < total:
            message = await next_message(reader)
            assert message.position is not None
            live.append(message.position.offset)
        assert live == list(range(live[0], total + 1))
        assert live[0] <= read[-1] + 1, "a gap between what was read and what came live"


# -- recovery end to end: two processes, one Redis -------------------------------------------

APP = """
from wsroute import App, Connection, History

app = App(history={"room:*": History(size=1000, ttl=300)})


@app.direct("join")
async def join(room: str, conn: Connection) -> str:
    await conn.subscribe(f"room:{room}")
    return room


@app.broadcast("say", topic=lambda n, conn: "room:1")
async def say(n: int) -> int:
    return n
"""


async def two_servers(start: StartServer, directory: Path, url: str) -> list[Server]:
    """A publishing and a subscribing ``wsroute run`` process on ``url``, listening."""
    write(directory, {"app.py": APP})
    broker = f"{url}?timeout=1&health_check_interval=1"
    servers = [
        await start("run", "app:app", "--port", "0", "--broker", broker, cwd=directory)
        for _ in range(2)
    ]
    for server in servers:
        await server.wait_listening()
    return servers


def recovering(position: tuple[int, str]) -> str:
    return "/?" + urlencode({"wsroute.recover": json.dumps({"room:1": list(position)})})


async def say(sender: WSClient, *numbers: int) -> None:
    for n in numbers:
        reply = await sender.request("say", n, id=n)
        assert reply["ok"], reply


async def join_recovering(client: WSClient) -> list[dict[str, Any]]:
    """Join room:1: every frame up to the reply, that reply included."""
    await client.send({"type": "join", "id": "join", "data": "1"})
    frames = []
    with trio.fail_after(TIMEOUT):
        for _ in range(1000):
            frame = await client.recv()
            frames.append(frame)
            if frame.get("id") == "join" and "ok" in frame:
                return frames
    raise AssertionError(f"no reply to join within 1000 frames: {frames[-3:]}")


async def test_a_client_recovers_what_it_missed_through_redis(
    start: StartServer, tmp_path: Path, own_redis_server: RedisServer
) -> None:
    redis = own_redis_server
    servers = await two_servers(start, tmp_path, redis.url)
    port_pub, port_sub = [await server.wait_listening() for server in servers]
    async with connect(port_pub) as sender:
        async with connect(port_sub) as first:
            assert (await first.request("join", "1"))["ok"]
            await say(sender, 0)
            event = await first.recv()
            assert (event["type"], event["topic"], event["data"]) == ("say", "room:1", 0)
            offset, epoch = event["offset"], event["epoch"]
            assert offset == 1 and isinstance(epoch, str)
            first.conn.socket.shutdown(socket.SHUT_RDWR)  # killed: no close frame

        await say(sender, *range(1, 51))
        async with connect(port_sub, recovering((offset, epoch))) as second:
            *missed, marker, reply = await join_recovering(second)
            assert [(f["type"], f["data"]) for f in missed] == [("say", n) for n in range(1, 51)]
            assert [(f["offset"], f["epoch"]) for f in missed] == [
                (offset + n, epoch) for n in range(1, 51)
            ]
            assert marker == {
                "type": "wsroute.recovery",
                "topic": "room:1",
                "data": {"recovered": True, "offset": offset + 50, "epoch": epoch, "missed": 50},
            }
            assert reply["ok"]
            await say(sender, 51)
            live = await second.recv()
            assert (live["data"], live["offset"], live["epoch"]) == (51, offset + 51, epoch)

        redis.kill()  # no persistence: it comes back empty
        for server in servers:
            await server.wait_for(r"WARNING lost the connection to Redis")
        await redis.astart()
        for server in servers:
            await server.wait_for(r"INFO reconnected to Redis")
        async with connect(port_sub, recovering((offset + 51, epoch))) as third:
            marker, reply = await join_recovering(third)
            assert marker["type"] == "wsroute.recovery" and reply["ok"]
            new_epoch = marker["data"]["epoch"]
            assert marker["data"] == {
                "recovered": False,
                "offset": 0,
                "epoch": new_epoch,
                "missed": 0,
                "reason": "epoch_changed",
            }
            assert isinstance(new_epoch, str) and new_epoch != epoch
            await say(sender, 52)
            live = await third.recv()
            assert (live["data"], live["offset"], live["epoch"]) == (52, 1, new_epoch)
