"""Presence on the Redis broker (``wsroute.brokers.redis.present`` and the session's
``presence_*`` calls) against real redis-server processes: the key layout, the join
and leave events the scripts publish (also when the process that removed an entry
dies right after), sweeps racing across sessions, the keys' expiry, a removal that
its caller gave up on, listing 10,000 entries; and apps on one Redis: two in one trio
run, three ``wsroute run`` processes of which one is killed.

The conformance checks, the ``presence_*`` ones included, run on Redis in
tests/test_redis_broker.py (``test_conformance``). Real time throughout (real
sockets); every wait is bounded.
"""

from __future__ import annotations

import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from wsroute import App, BrokerError, Connection, Presence, PresenceEntry, Request
from wsroute._presence import decode_entry, encode_entry
from wsroute.brokers import BrokerMessage, BrokerSession, BrokerState, RedisBroker
from wsroute.brokers.redis import present
from wsroute.testing import open_app, open_client

from .cliproc import StartServer, start, write
from .presencedeath import leave_outlives_the_remover, leave_outlives_the_sweeper
from .redisproc import RedisServer, own_redis_server, redis_server
from .redistools import TIMEOUT, States, next_message, quick
from .wsclient import WSClient, connect

__all__ = ["own_redis_server", "redis_server", "start"]  # fixtures, imported to be found


async def redis_now_ms(client: Any) -> int:
    """Redis' clock in ms, as the scripts read it (coredis' ``time()`` divides the
    microseconds by 1000 once too often)."""
    now: int = await client.eval(
        "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"
    )
    return now


# -- names, on their own ----------------------------------------------------------------


def test_a_field_names_its_node_unambiguously() -> None:
    assert present.field("node-1", "conn-9") == b"6:node-1:conn-9"
    # The length tells where the node ends, whatever either name holds.
    assert present.field("a:b", "c") == b"3:a:b:c"
    assert present.field("a", "b:c") == b"1:a:b:c"
    assert present.field("nø", "") == b"3:n\xc3\xb8:"


def test_a_value_holds_the_entry_and_its_leave_event() -> None:
    cases = [
        (b"entry", None, b"entry"),  # the entry itself: a topic without events
        (b"entry", b"left", b"\x005:entry+left"),
        (b"", b"", b"\x000:+"),
        (b"\x00odd", None, b"\x004:\x00odd"),  # an entry that looks packed
        (b"e", b"\x04kept?", b"\x001:e+\x05\x04kept?"),  # escaped as a publish
        (b"12:+", b"3:+", b"\x004:12:++3:+"),
    ]
    for entry, leave, value in cases:
        assert present.packed(entry, leave) == value
        published = leave if leave is None or not leave.startswith(b"\x04") else b"\x05" + leave
        assert present.unpacked(value) == (entry, published)
    for wrong in (b"\x00", b"\x00x:e", b"\x009:short", b"\x001:e-left"):
        with pytest.raises(ValueError, match="not a packed presence entry"):
            present.unpacked(wrong)


def test_the_keys_of_presence() -> None:
    assert present.topic_key(b"app:", "room:1") == b"app:{room:1}:p"  # the history's tag
    assert present.nodes_key(b"app:") == b"app:presence:nodes"
    assert present.node_key(b"app:", "n1") == b"app:presence:node:n1"
    assert present.keep_ms(30.0) == b"300000"


# -- what Redis holds -------------------------------------------------------------------


async def test_the_key_layout(redis_server: RedisServer) -> None:
    async with (
        RedisBroker(redis_server.url, prefix="layout:").connect() as session,
        redis_server.client() as client,
    ):
        before = await redis_now_ms(client)
        assert not await session.presence_heartbeat("n1", 30)
        after = await redis_now_ms(client)
        await session.presence_add("room:1", "c1", "n1", b"one")
        await session.presence_add("room:1", "c2", "n1", b"two")
        await session.presence_add("room:1", "c2", "n1", b"two again")  # replaced
        await session.presence_add("room:2", "c1", "n1", b"elsewhere")
        assert await client.hgetall("layout:{room:1}:p") == {
            "2:n1:c1": "one",
            "2:n1:c2": "two again",
        }
        assert await client.hgetall("layout:{room:2}:p") == {"2:n1:c1": "elsewhere"}
        assert await client.hgetall("layout:presence:node:n1") == {"room:1": "2", "room:2": "1"}
        ends = await client.zscore("layout:presence:nodes", "n1")
        assert ends is not None and before + 30_000 <= ends <= after + 30_000

        assert await session.presence_remove("room:1", "c1", "n1")
        assert await client.hgetall("layout:presence:node:n1") == {"room:1": "1", "room:2": "1"}
        assert await session.presence_remove("room:2", "c1", "n1")
        assert not await client.exists(["layout:{room:2}:p"])  # an empty hash is no key
        assert await client.hgetall("layout:presence:node:n1") == {"room:1": "1"}

        await session.presence_heartbeat("n1", 0.05)
        await trio.sleep(0.1)
        assert await session.presence_sweep() == [("room:1", b"two again")]
        assert not await client.exists(["layout:{room:1}:p", "layout:presence:node:n1"])
        assert await client.zscore("layout:presence:nodes", "n1") is None


async def test_a_sweep_takes_only_the_dead_nodes_fields(redis_server: RedisServer) -> None:
    """Node names that are prefixes of each other, or hold the separator, stay apart."""
    names = ["n", "n1", "n:1", "1:n"]
    async with RedisBroker(redis_server.url, prefix="apart:").connect() as session:
        for name in names:
            await session.presence_heartbeat(name, 30)
            await session.presence_add("t", "1:n", name, name.encode())
            await session.presence_add("t", ":", name, name.encode() + b"!")
        await session.presence_heartbeat("n", 0.05)
        await trio.sleep(0.1)
        assert sorted(await session.presence_sweep()) == [("t", b"n"), ("t", b"n!")]
        listed = sorted(await session.presence_list("t"))
        assert listed == sorted(n.encode() + end for n in names[1:] for end in (b"", b"!"))


async def test_concurrent_sweeps_from_four_sessions_are_disjoint(
    redis_server: RedisServer,
) -> None:
    broker = RedisBroker(redis_server.url, prefix="race:")
    nodes = [f"dead-{n}" for n in range(20)]
    expected = []
    async with broker.connect() as writer:
        for node in nodes:
            await writer.presence_heartbeat(node, 30)
            for member in range(25):
                topic = f"room:{member % 5}"
                entry = f"{node}/{member}".encode()
                await writer.presence_add(topic, str(member), node, entry)
                expected.append((topic, entry))
        await writer.presence_heartbeat("alive", 30)
        await writer.presence_add("room:0", "x", "alive", b"alive")
        for node in nodes:
            await writer.presence_heartbeat(node, 0.05)
        await trio.sleep(0.1)
    swept: list[list[tuple[str, bytes]]] = [[] for _ in range(4)]
    async with AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(broker.connect()) for _ in swept]
        go = trio.Event()

        async def sweep(session: BrokerSession, into: list[tuple[str, bytes]]) -> None:
            await go.wait()
            for _ in range(3):
                into.extend(await session.presence_sweep())

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for session, into in zip(sessions, swept, strict=True):
                    nursery.start_soon(sweep, session, into)
                await trio.sleep(0.01)
                go.set()
    everything = [item for each in swept for item in each]
    assert len(everything) == len(set(everything)) == len(expected)
    assert sorted(everything) == sorted(expected)
    async with broker.connect() as session:
        assert await session.presence_list("room:0") == [b"alive"]


async def test_the_scripts_publish_the_events_kept_beside_the_entries(
    redis_server: RedisServer,
) -> None:
    async with (
        RedisBroker(redis_server.url, prefix="events:").connect() as session,
        RedisBroker(redis_server.url, prefix="events:").connect() as watcher,
        redis_server.client() as client,
    ):
        await watcher.subscribe_many(["room:1", "room:2"])
        await session.presence_heartbeat("n1", 30)
        await session.presence_add("room:1", "c1", "n1", b"one", join=b"j1", leave=b"l1")
        assert await next_message(watcher) == BrokerMessage("room:1", b"j1")
        # Replaced: no join; the leave, escaped as a plain publish (it looks kept).
        await session.presence_add("room:1", "c1", "n1", b"one", join=b"j", leave=b"\x04l1")
        await session.presence_add("room:1", "c2", "n1", b"two", leave=b"l2")
        await session.presence_add("room:1", "c2", "n1", b"two")  # its leave dropped
        await session.presence_add("room:2", "c3", "n1", b"three", leave=b"l3")
        assert await client.hgetall("events:{room:1}:p") == {
            "2:n1:c1": "\x003:one+\x05\x04l1",
            "2:n1:c2": "two",
        }
        assert await client.hgetall("events:{room:2}:p") == {"2:n1:c3": "\x005:three+l3"}
        assert sorted(await session.presence_list("room:1")) == [b"one", b"two"]
        assert await session.presence_remove("room:1", "c1", "n1")
        assert not await session.presence_remove("room:1", "c1", "n1")
        assert await session.presence_remove("room:1", "c2", "n1")
        assert await next_message(watcher) == BrokerMessage("room:1", b"\x04l1")
        assert not await client.exists(["events:{room:1}:p"])
        await session.presence_heartbeat("n1", 0.05)
        await trio.sleep(0.1)
        assert await session.presence_sweep() == [("room:2", b"three")]
        assert not await client.exists(["events:{room:2}:p"])
        await session.publish("room:1", b"sentinel")  # nothing came before it
        assert await next_message(watcher) == BrokerMessage("room:2", b"l3")
        assert await next_message(watcher) == BrokerMessage("room:1", b"sentinel")


async def test_a_leave_reaches_subscribers_when_the_remover_dies_right_after(
    redis_server: RedisServer,
) -> None:
    await leave_outlives_the_remover(RedisBroker(redis_server.url, prefix="died:"))


async def test_a_leave_reaches_subscribers_when_the_sweeper_dies_right_after(
    redis_server: RedisServer,
) -> None:
    await leave_outlives_the_sweeper(RedisBroker(redis_server.url, prefix="swept:"), 0.3)


# -- expiry -----------------------------------------------------------------------------


async def test_keys_expire_ten_ttls_after_the_last_beat(redis_server: RedisServer) -> None:
    keys = ["expiry:{t}:p", "expiry:presence:node:n", "expiry:presence:nodes"]
    async with (
        RedisBroker(redis_server.url, prefix="expiry:").connect() as session,
        redis_server.client() as client,
    ):
        await session.presence_heartbeat("n", 0.05)
        await session.presence_add("t", "m", "n", b"entry")
        for key in keys:
            assert 0 < await client.pttl(key) <= 500, key
        with trio.fail_after(TIMEOUT):  # no beat since: all go
            while await client.exists(keys):
                await trio.sleep(0.05)


async def test_a_quiet_topic_lives_as_long_as_its_node_beats(redis_server: RedisServer) -> None:
    """Nobody joins for longer than the keys' expiry: the heartbeats keep the hash."""
    async with (
        RedisBroker(redis_server.url, prefix="quiet:").connect() as session,
        redis_server.client() as client,
    ):
        await session.presence_heartbeat("n", 0.05)
        await session.presence_add("t", "m", "n", b"entry")
        for _ in range(40):  # 0.8 s: past the 0.5 s the addition gave
            await trio.sleep(0.02)
            await session.presence_heartbeat("n", 0.05)
        assert await session.presence_list("t") == [b"entry"]
        assert 400 < await client.pttl("quiet:{t}:p") <= 500


async def test_an_expiry_only_ever_lengthens(redis_server: RedisServer) -> None:
    async with (
        RedisBroker(redis_server.url, prefix="longest:").connect() as quick,
        RedisBroker(redis_server.url, prefix="longest:").connect() as slow,
        redis_server.client() as client,
    ):
        assert await client.pttl("longest:{t}:p") == -2
        await slow.presence_add("t", "s", "slow", b"s")  # before any beat: 10 x 30 s
        assert 290_000 < await client.pttl("longest:{t}:p") <= 300_000
        await quick.presence_heartbeat("quick", 0.05)
        await quick.presence_add("t", "q", "quick", b"q")
        assert 290_000 < await client.pttl("longest:{t}:p") <= 300_000
        assert 0 < await client.pttl("longest:presence:node:quick") <= 500


# -- in the publishers' line ----------------------------------------------------------------


async def test_a_removal_whose_caller_gave_up_still_goes_out(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    async with RedisBroker(server.url).connect() as session, server.client() as client:
        await session.presence_heartbeat("n", 30)
        await session.presence_add("t", "m", "n", b"entry")
        server.pause()  # a publish goes out and waits; the removal queues behind it
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.publish, "elsewhere", b"x")
                await trio.sleep(0.05)
                with trio.move_on_after(0.1) as scope:
                    await session.presence_remove("t", "m", "n")
                assert scope.cancelled_caught
                server.resume()
        finally:
            server.resume()
        assert await session.presence_list("t") == []
        assert not await client.exists(["wsroute:{t}:p"])


async def test_a_failing_script_is_a_broker_error_and_the_link_stays_up(
    redis_server: RedisServer,
) -> None:
    states = States()
    async with (
        RedisBroker(redis_server.url, prefix="wrong:").connect(on_state=states) as session,
        redis_server.client() as client,
    ):
        await client.set("wrong:{t}:p", "not a hash")
        wrong = r"listing presence from Redis failed: .*wrong kind of value"
        with pytest.raises(BrokerError, match=wrong):
            await session.presence_list("t")
        with pytest.raises(BrokerError, match=r"adding a presence entry in Redis failed"):
            await session.presence_add("t", "m", "n", b"x")
        await session.subscribe("other")
        await session.publish("other", b"still fine")
        assert await next_message(session) == BrokerMessage("other", b"still fine")
    assert states.seen == []


# -- 10,000 on one topic ----------------------------------------------------------------------


async def test_listing_10000_entries(own_redis_server: RedisServer) -> None:
    """The issue's aim: ``app.presence`` on 10,000 members within 50 ms. Measured here:
    the script and its reply (``presence_list``), and decoding the entries as
    ``app.presence`` does. Printed; asserted only with a wide margin."""
    server = own_redis_server
    count, nodes = 10_000, 4
    async with RedisBroker(server.url).connect() as session, server.client() as client:
        for node in range(nodes):
            await session.presence_heartbeat(f"node-{node}", 30)

        async def add(start: int) -> None:
            for n in range(start, count, 100):
                member = f"conn-{n:06d}"
                entry = encode_entry(member, f"user-{n}", {"name": f"User {n}"})
                await session.presence_add("room", member, f"node-{n % nodes}", entry)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for start in range(100):
                nursery.start_soon(add, start)
        adding = time.perf_counter() - started
        await client.config_resetstat()
        lists, decodes = [], []
        for _ in range(10):
            started = time.perf_counter()
            entries = await session.presence_list("room")
            listed = time.perf_counter()
            decoded = [decode_entry(entry) for entry in entries]
            lists.append(listed - started)
            decodes.append(time.perf_counter() - listed)
        stats: Any = await client.info("commandstats")
        assert len(decoded) == count
        assert {entry["connection"] for entry in decoded} == {f"conn-{n:06d}" for n in range(count)}

        await session.presence_heartbeat("node-0", 0.05)
        await trio.sleep(0.1)
        started = time.perf_counter()
        swept = await session.presence_sweep()
        sweeping = time.perf_counter() - started
        assert len(swept) == count // nodes
    in_redis = stats["cmdstat_evalsha"]["usec_per_call"] / 1000
    list_ms, decode_ms = statistics.median(lists) * 1000, statistics.median(decodes) * 1000
    print(
        f"\n10,000 entries of {sum(map(len, entries)) // count} bytes:"
        f" added in {adding * 1000:.0f} ms (100 tasks);"
        f" presence_list median {list_ms:.1f} ms (script {in_redis:.1f} ms in Redis),"
        f" decoding {decode_ms:.1f} ms, total {list_ms + decode_ms:.1f} ms;"
        f" sweeping a dead node's 2,500 {sweeping * 1000:.1f} ms"
    )
    assert list_ms + decode_ms < 500  # the aim is 50 ms: a wide margin for slow machines


# -- apps on one Redis ------------------------------------------------------------------------


def room_app(url: str, **options: Any) -> App:
    app = App(broker=RedisBroker(url), presence={"room:*": Presence(events=True)}, **options)

    @app.accept
    async def accept(request: Request) -> str | None:
        return request.query.get("user")

    @app.direct("join")
    async def join(room: str, conn: Connection) -> str:
        await conn.subscribe(f"room:{room}")
        return conn.id

    return app


async def test_two_apps_on_one_redis_see_each_others_members(redis_server: RedisServer) -> None:
    first, second = room_app(redis_server.url), room_app(redis_server.url)
    async with open_app(first), open_app(second):
        async with open_client(second, query={"user": "bob"}) as bob:
            bob_id = await bob.request("join", "1")
            async with open_client(first, query={"user": "ann"}) as ann:
                ann_id = await ann.request("join", "1")
                expected = sorted(
                    [PresenceEntry(ann_id, "ann"), PresenceEntry(bob_id, "bob")],
                    key=lambda e: e.connection,
                )
                for app in (first, second):
                    assert sorted(await app.presence("room:1"), key=lambda e: e.connection) == (
                        expected
                    )
                    assert tuple(await app.presence_stats("room:1")) == (2, 2)
            left = await bob.expect_event("wsroute.leave")
            assert left.data["connection"] == ann_id
            assert await first.presence("room:1") == [PresenceEntry(bob_id, "bob")]
        assert await second.presence("room:1") == []


async def test_entries_lost_with_redis_are_back_as_soon_as_it_is(
    own_redis_server: RedisServer,
) -> None:
    """A Redis restarted empty lost this process's entries: the beat that adds them
    again comes when the broker is back, not a third of presence_ttl later (100 s)."""
    server, states = own_redis_server, States()
    app = App(broker=quick(server.url), presence={"room:*": Presence()}, presence_ttl=300)

    @app.on_broker_state
    async def record(state: BrokerState) -> None:
        states(state)

    @app.direct("join")
    async def join(room: str, conn: Connection) -> str:
        await conn.subscribe(f"room:{room}")
        return conn.id

    async with open_app(app), open_client(app) as client:
        me = await client.request("join", "1")
        assert await app.presence("room:1") == [PresenceEntry(me, None)]
        server.kill()
        await states.wait_for(BrokerState.DISCONNECTED)
        await server.astart()
        await states.wait_for(BrokerState.CONNECTED)
        with trio.fail_after(TIMEOUT):
            while not await app.presence("room:1"):
                await trio.sleep(0.02)
        assert await app.presence("room:1") == [PresenceEntry(me, None)]


async def test_app_presence_on_10000_members(redis_server: RedisServer) -> None:
    """``app.presence`` end to end (the issue's aim: within 50 ms): the broker's list,
    decoding and the ``PresenceEntry`` objects. Printed; asserted with a wide margin."""
    count = 10_000
    app = room_app(redis_server.url)
    async with open_app(app), RedisBroker(redis_server.url).connect() as peer:
        await peer.presence_heartbeat("peer", 30)

        async def add(start: int) -> None:
            for n in range(start, count, 100):
                entry = encode_entry(f"c{n}", f"user-{n % 3000}", {"name": f"User {n}"})
                await peer.presence_add("room:big", f"c{n}", "peer", entry)

        async with trio.open_nursery() as nursery:
            for start in range(100):
                nursery.start_soon(add, start)
        times = []
        for _ in range(10):
            started = time.perf_counter()
            members = await app.presence("room:big")
            times.append(time.perf_counter() - started)
        stats = await app.presence_stats("room:big")
    assert len(members) == count and tuple(stats) == (count, 3000)
    median = statistics.median(times) * 1000
    print(f"\napp.presence on 10,000 members over Redis: median {median:.1f} ms")
    assert median < 500  # the aim is 50 ms: a wide margin for slow machines


PROCESS_APP = """
from wsroute import App, Connection, Presence

app = App(presence={"room:*": Presence(events=True)}, presence_ttl=0.6)


@app.direct("join")
async def join(room: str, conn: Connection) -> str:
    await conn.subscribe(f"room:{room}")
    return conn.id
"""


async def leaves(client: WSClient, seconds: float) -> list[str]:
    """The connections of the leave events ``client`` receives within ``seconds``."""
    found: list[str] = []
    with trio.move_on_after(seconds):
        while True:
            try:
                frame = await client.recv(timeout=seconds)
            except TimeoutError:
                break
            if frame.get("type") == "wsroute.leave":
                found.append(frame["data"]["connection"])
    return found


async def test_a_killed_process_is_swept_and_its_leave_sent_once(
    start: StartServer, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Three processes; one is killed with its member on the room. Each survivor's
    client hears it leave once: the two survivors sweep, one of them gets the entry."""
    write(tmp_path, {"app.py": PROCESS_APP})
    broker = f"{redis_server.url}?prefix=killed:"
    servers = [
        await start("run", "app:app", "--port", "0", "--broker", broker, cwd=tmp_path)
        for _ in range(3)
    ]
    ports = [await server.wait_listening() for server in servers]
    async with connect(ports[0]) as doomed, connect(ports[1]) as one, connect(ports[2]) as two:
        doomed_id = (await doomed.request("join", "1"))["data"]
        for client in (one, two):
            assert (await client.request("join", "1"))["ok"]
        servers[0].process.kill()
        await servers[0].exit_code()
        heard: dict[str, list[str]] = {}

        async def listen(name: str, client: WSClient) -> None:
            # The ttl and a sweep (0.8 s), a margin, and time for a second leave.
            heard[name] = await leaves(client, 2.5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen, "one", one)
            nursery.start_soon(listen, "two", two)
        assert heard == {"one": [doomed_id], "two": [doomed_id]}
