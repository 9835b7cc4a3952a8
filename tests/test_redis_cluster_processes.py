"""Real ``wsroute run`` processes sharing a Redis Cluster (``--broker
redis+cluster://...``), driven by real WebSocket clients: a broadcast reaches every
client of every process once, each topic lives on the shard that serves its slot, and
a killed process's member leaves once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from wsroute.brokers.redis.slots import key_slot

from .cliproc import StartServer, start, write
from .rediscluster import RedisCluster, redis_cluster
from .redisproc import RedisServer
from .test_redis_presence import PROCESS_APP, leaves
from .test_redis_processes import APP, events, wait_until
from .wsclient import WSClient, connect

__all__ = ["redis_cluster", "start"]  # fixtures, imported to be found

#: Rooms enough to land on every shard of three.
ROOMS = ["red", "green", "blue", "amber", "violet", "teal"]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "project", {"app.py": APP})


def subscribers(cluster: RedisCluster, topic: str) -> tuple[RedisServer, int]:
    """The shard that serves ``topic``'s channel and how many subscribe to it there."""
    channel = f"wsroute:{{{topic}}}"
    owner = cluster.owner_of(key_slot(channel.encode()))
    _, count = owner.command("PUBSUB", "SHARDNUMSUB", channel)
    return owner, int(count)


async def test_broadcasts_reach_every_client_of_three_processes_once(
    start: StartServer, app_dir: Path, redis_cluster: RedisCluster
) -> None:
    cluster = redis_cluster
    owners = {subscribers(cluster, f"room:{room}")[0] for room in ROOMS}
    assert len(owners) == 3, "the rooms should span every shard"
    servers = [
        await start("run", "app:app", "--port", "0", "--broker", cluster.url(), cwd=app_dir)
        for _ in range(3)
    ]
    ports = [await server.wait_listening() for server in servers]
    async with (
        connect(ports[0]) as a,
        connect(ports[1]) as b,
        connect(ports[2]) as c,
        connect(ports[2]) as c2,
        connect(ports[1]) as publisher,  # joins nothing: its requests skip events
    ):
        clients = (a, b, c, c2)

        async def all_subscribed() -> bool:
            return subscribers(cluster, "all")[1] == 3

        await wait_until(all_subscribed, "each process subscribes to 'all' on its shard")
        for client in clients:
            for room in ROOMS:
                assert (await client.request("join", room))["ok"]
        for room in ROOMS:
            owner, count = subscribers(cluster, f"room:{room}")
            assert count == 3, room  # one subscription per process, on the room's shard
            others = [node for node in cluster.masters() if node is not owner]
            for node in others:
                assert f"wsroute:{{room:{room}}}" not in node.command("PUBSUB", "SHARDCHANNELS")
        for n, room in enumerate(ROOMS):
            shout = {"room": room, "text": str(n)}
            assert (await publisher.request("shout", shout, id=n))["ok"]
        assert (await publisher.request("say", 999, id="sentinel"))["ok"]
        for client in clients:
            got = await events(client, "shout", len(ROOMS))
            # Order holds per room (per shard); across rooms it may differ.
            assert sorted(got, key=lambda s: s["text"]) == [
                {"room": room, "text": str(n)} for n, room in enumerate(ROOMS)
            ]
        # Nothing twice: after every shout, only the sentinel (and no shout) is left.
        for client in clients:
            with trio.fail_after(5):
                while True:
                    frame = await client.recv()
                    assert frame.get("type") != "shout", f"a shout twice: {frame}"
                    if frame.get("type") == "say" and frame.get("data") == 999:
                        break


async def test_a_killed_process_is_swept_off_the_cluster_and_its_leave_sent_once(
    start: StartServer, tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    """Three processes on the cluster; one is killed with its member on the room. Each
    survivor's client hears it leave once (presence kept as present_sharded.py says)."""
    write(tmp_path, {"app.py": PROCESS_APP})
    broker = f"{redis_cluster.url()}?prefix=killed:"
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
            heard[name] = await leaves(client, 2.5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen, "one", one)
            nursery.start_soon(listen, "two", two)
        assert heard == {"one": [doomed_id], "two": [doomed_id]}
