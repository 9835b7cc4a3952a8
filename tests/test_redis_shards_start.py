"""A cluster session that starts while a master without replica is down (issue #23):
it starts on the masters it reaches, reports itself lost from the start, refuses the
down shard's topics at once and is restored once that master is back; it fails fast
only when no master is reached. Real redis-server processes, real time, every wait
bounded.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import trio

from wsroute import BrokerError
from wsroute.brokers import BrokerSession, BrokerState, History
from wsroute.brokers.redis.slots import key_slot
from wsroute.testing import open_app, open_client

from .cliproc import StartServer, assert_one_line_error, start, write, wsroute_cli
from .rawws import http_exchange
from .rediscluster import ClusterNode, RedisCluster, running_cluster
from .redistools import TIMEOUT, States, next_message
from .test_catchup import RECOVERY, make_app, marker, nothing_more, receive_events
from .test_catchup import States as AppStates
from .test_redis_processes import APP, events
from .test_redis_shards import TOPICS, quick
from .wsclient import connect

__all__ = ["start"]  # a fixture, imported to be found

#: How long a refusal of a down shard's topic may take: at once, not after
#: ``publish_timeout`` (0.5 s for ``quick``). "At once" is a turn of the event loop,
#: which a machine busy with other work may stretch to a tenth of a second.
AT_ONCE = 0.25


def split(cluster: RedisCluster, dead: ClusterNode) -> tuple[list[str], list[str]]:
    """``TOPICS`` served by ``dead``, and the others (on the two other masters)."""
    on_dead = [t for t in TOPICS if cluster.owner_of(key_slot(t.encode())) is dead]
    healthy = [t for t in TOPICS if t not in on_dead]
    assert on_dead and len({cluster.owner_of(key_slot(t.encode())) for t in healthy}) == 2
    return on_dead, healthy


async def delivered(pub: BrokerSession, sub: BrokerSession, topics: list[str]) -> set[str]:
    """Publish one message to each of ``topics`` and return the topics ``sub`` got."""
    for topic in topics:
        await pub.publish(topic, topic.encode())
    got = set()
    for _ in topics:
        message = await next_message(sub)
        assert message.data == message.topic.encode()
        got.add(message.topic)
    return got


async def test_a_master_down_at_start_is_a_shard_down_from_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsroute")
    with running_cluster(masters=3) as cluster:
        dead = cluster.owner_of(key_slot(TOPICS[0].encode()))
        on_dead, healthy = split(cluster, dead)
        where = f"shard 127.0.0.1:{dead.port}"
        cluster.kill(dead)
        pub_states, sub_states = States(), States()
        broker = quick(cluster)
        began = trio.current_time()
        async with (
            broker.connect(on_state=pub_states) as pub,
            broker.connect(on_state=sub_states) as sub,
        ):
            took = trio.current_time() - began
            # Lost from the start, and told so before connect() returned.
            assert pub_states.seen == sub_states.seen == [BrokerState.DISCONNECTED]
            await sub.subscribe_many(TOPICS)  # the down shard's: recorded, subscribed later
            assert await delivered(pub, sub, healthy) == set(healthy)
            for call in (
                pub.publish(on_dead[0], b"while down"),
                pub.read_history(on_dead[0], History(size=10, ttl=60)),
                pub.presence_add(on_dead[0], "member", "node", b"entry"),
            ):
                asked = trio.current_time()
                with pytest.raises(BrokerError, match=f"{where} .* unreachable"):
                    await call
                assert trio.current_time() - asked < AT_ONCE
            await dead.astart()  # same port and nodes.conf: it serves its slots again
            await pub_states.wait_for(BrokerState.CONNECTED)
            await sub_states.wait_for(BrokerState.CONNECTED)
            channel = f"wsroute:{{{on_dead[0]}}}"
            assert dead.command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1
            assert await delivered(pub, sub, TOPICS) == set(TOPICS)
            restored = [pub_states.seen, sub_states.seen]
        assert restored == [[BrokerState.DISCONNECTED, BrokerState.CONNECTED]] * 2
        assert took < 1.0  # the first attempt refused: no waiting (start_timeout=0)
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(f"cannot reach Redis Cluster {where} at start" in m for m in warned)
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any(f"reached Redis Cluster {where} after" in m for m in infos)
        assert any("every shard of Redis Cluster is up" in m for m in infos)
        print(f"started with a master down in {took * 1000:.0f} ms")


async def test_no_master_reached_at_start_fails_fast_naming_each(tmp_path: Path) -> None:
    # A master without slots answers CLUSTER SLOTS (naming the slots' master) but
    # serves nothing itself: the topology can be read, and no master linked.
    with running_cluster(masters=1) as cluster:
        (master,) = cluster.nodes
        empty = cluster.add_master()
        with trio.fail_after(TIMEOUT):  # until it has heard which slots the master serves
            while not empty.command("CLUSTER", "SLOTS"):
                await trio.sleep(0.02)
        cluster.kill(master)
        began = trio.current_time()
        with trio.fail_after(TIMEOUT), pytest.raises(BrokerError) as info:
            async with quick(cluster).connect():
                pass
        took = trio.current_time() - began
        write(tmp_path, {"app.py": APP})
        result = await wsroute_cli(
            "run", "app:app", "--port", "0", "--broker", cluster.url(), cwd=tmp_path
        )
        assert_one_line_error(result, 1, "no master of the cluster could be reached")
    message = str(info.value)
    assert message.startswith("cannot connect to Redis at redis+cluster://")
    assert f"no master of the cluster could be reached: shard 127.0.0.1:{master.port}:" in message
    assert took < 1.0


async def test_start_timeout_waits_for_every_master_and_give_up_after_counts_from_the_start() -> (
    None
):
    with running_cluster(masters=3) as cluster:
        dead = cluster.owner_of(key_slot(TOPICS[0].encode()))
        cluster.kill(dead)

        # start_timeout: every master is awaited that long, then the session starts
        # without the one still down.
        states = States()
        began = trio.current_time()
        async with quick(cluster, start_timeout=1.0).connect(on_state=states):
            took = trio.current_time() - began
            assert states.seen == [BrokerState.DISCONNECTED]
        assert 1.0 <= took < 2.0

        # give_up_after counts from the start for a master never reached.
        began = trio.current_time()
        with (
            trio.fail_after(TIMEOUT),
            pytest.raises(BrokerError, match=r"could not reach shard .* in 1 s of trying"),
        ):
            async with quick(cluster, give_up_after=1.0).connect() as session:
                await session.subscribe(TOPICS[0])
                await trio.sleep_forever()
        assert 1.0 <= trio.current_time() - began < 2.0

        # After start_timeout, give_up_after counts from the start of the session.
        began = trio.current_time()
        started = -1.0
        with (
            trio.fail_after(TIMEOUT),
            pytest.raises(BrokerError, match=r"could not reach shard .* in 0\.5 s of trying"),
        ):
            async with quick(cluster, start_timeout=1.0, give_up_after=0.5).connect():
                started = trio.current_time()
                await trio.sleep_forever()
        assert started - began >= 1.0
        assert 0.5 <= trio.current_time() - started < 1.5

        # A master back within start_timeout: the session starts whole, never lost.
        states = States()
        began = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def restart() -> None:
                await trio.sleep(0.5)
                await dead.astart()

            nursery.start_soon(restart)
            async with quick(cluster, start_timeout=10.0).connect(on_state=states) as session:
                took = trio.current_time() - began
                await session.publish(TOPICS[0], b"on the master back")
        assert states.seen == []
        assert 0.5 <= took < 5.0


async def test_an_app_started_with_a_master_down_serves_and_says_lost_until_it_is_back() -> None:
    with running_cluster(masters=3) as cluster:
        dead = cluster.owner_of(key_slot(TOPICS[0].encode()))
        on_dead, healthy = split(cluster, dead)
        cluster.kill(dead)
        app = make_app(quick(cluster))
        states = AppStates(app)
        async with open_app(app):
            await states.wait_for(BrokerState.DISCONNECTED)
            assert "\nwsroute_broker_connected 0\n" in app.metrics.expose()
            await app.publish(healthy[0], "msg", 1)  # its shard is up
            with pytest.raises(BrokerError, match=f"shard 127.0.0.1:{dead.port} "):
                await app.publish(on_dead[0], "msg", 1)
            await dead.astart()
            await states.wait_for(BrokerState.CONNECTED)
            assert "\nwsroute_broker_connected 1\n" in app.metrics.expose()
            await app.publish(on_dead[0], "msg", 2)
        assert states.seen == [BrokerState.DISCONNECTED, BrokerState.CONNECTED]


async def test_wsroute_run_starts_with_a_master_down_and_logs_it(
    start: StartServer, tmp_path: Path
) -> None:
    write(tmp_path, {"app.py": APP})
    with running_cluster(masters=3) as cluster:
        dead = cluster.owner_of(key_slot(b"room:red"))
        rooms = [f"{n}" for n in range(40)]
        down = next(r for r in rooms if cluster.owner_of(key_slot(f"room:{r}".encode())) is dead)
        up = next(r for r in rooms if cluster.owner_of(key_slot(f"room:{r}".encode())) is not dead)
        cluster.kill(dead)
        server = await start(
            "run", "app:app", "--port", "0", "--broker", cluster.url(), cwd=tmp_path
        )
        await server.wait_for(
            rf"WARNING .*cannot reach Redis Cluster shard 127\.0\.0\.1:{dead.port} at start"
        )
        port = await server.wait_listening()

        async def ready() -> int:
            request = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
            return (await http_exchange(port, request)).status

        assert await ready() == 503  # lost from the start: no new clients, please
        async with connect(port) as client:
            for room in (up, down):
                assert (await client.request("join", room))["ok"]
            reply = await client.request("shout", {"room": up, "text": "up"}, id="up")
            assert reply["ok"]
            assert await events(client, "shout", 1) == [{"room": up, "text": "up"}]
            reply = await client.request("shout", {"room": down, "text": "down"}, id="down")
            assert not reply["ok"] and reply["error"]["code"] == "broker_unavailable"
            await dead.astart()
            assert await events(client, "broker_state", 1) == [{"state": "connected"}]
            await server.wait_for(r"every shard of Redis Cluster is up")
            assert await ready() == 200
            reply = await client.request("shout", {"room": down, "text": "back"}, id="back")
            assert reply["ok"]
            assert await events(client, "shout", 1) == [{"room": down, "text": "back"}]
        assert server.process.returncode is None  # it kept serving throughout


async def test_a_member_joined_while_started_lost_is_caught_up_as_in_any_loss() -> None:
    """An app starts with a master down; a client joins a room with history on a healthy
    shard meanwhile. Its live events are held, as in any loss, and at the restore it is
    told ``recovered: false`` (it had no position), then gets what follows live."""
    with running_cluster(masters=3) as cluster:
        for node in cluster.nodes:  # kept publishes on the shards that are up
            node.command("CONFIG", "SET", "cluster-require-full-coverage", "no")
        dead = cluster.owner_of(key_slot(b"room:0"))
        room = next(
            f"room:{n}"
            for n in range(1, 100)
            if cluster.owner_of(key_slot(f"room:{n}".encode())) is not dead
        )
        cluster.kill(dead)
        app = make_app(quick(cluster))
        states = AppStates(app)
        async with open_app(app), open_client(app) as client:
            await states.wait_for(BrokerState.DISCONNECTED)
            await client.request("join", {"room": room})
            await app.publish(room, "msg", 1)  # kept on its shard, held for the member
            await nothing_more(client)
            await dead.astart()
            await states.wait_for(BrokerState.CONNECTED)
            (told,) = await receive_events(client, 1)
            assert told.type == RECOVERY
            assert {k: v for k, v in told.data.items() if k != "epoch"} == marker(
                False, 1, 0, "broker_lost"
            )
            await app.publish(room, "msg", 2)
            (live,) = await receive_events(client, 1)
            assert (live.type, live.data, live.offset) == ("msg", 2, 2)
            await nothing_more(client)


async def test_a_hung_master_at_start_delays_the_start_by_timeout_at_most() -> None:
    """A master that accepts connections but never answers (SIGSTOP): the session
    starts without it once its first attempt timed out, and links it once it answers."""
    with running_cluster(masters=3) as cluster:
        hung = cluster.owner_of(key_slot(TOPICS[0].encode()))
        assert hung.pid is not None
        os.kill(hung.pid, signal.SIGSTOP)
        try:
            states = States()
            began = trio.current_time()
            async with quick(cluster).connect(on_state=states) as session:  # timeout=0.5
                took = trio.current_time() - began
                assert states.seen == [BrokerState.DISCONNECTED]
                with pytest.raises(BrokerError, match=f"shard 127.0.0.1:{hung.port} "):
                    await session.publish(TOPICS[0], b"while hung")
                os.kill(hung.pid, signal.SIGCONT)
                await states.wait_for(BrokerState.CONNECTED)
                await session.publish(TOPICS[0], b"answered")
        finally:
            os.kill(hung.pid, signal.SIGCONT)
    assert 0.5 <= took < 1.5
    print(f"started without a hung master after {took:.2f} s")
