"""Real ``wsroute run`` processes sharing one Redis, driven by real WebSocket clients.

Two processes on ``--port 0`` with ``--broker redis://127.0.0.1:PORT``; clients from
tests/wsclient.py (the independent `websockets` client). What Redis sees is checked
with ``PUBSUB`` through a plain coredis client. A process cut off from Redis by a
relay (tests/redistools.py) catches its clients up on a topic with history once it
is back. Every wait is bounded and every
process is killed in the end (the ``start`` fixture of test_cli).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from .cliproc import Server, StartServer, assert_one_line_error, start, write, wsroute_cli
from .redisproc import RedisServer, free_port, own_redis_server, redis_server
from .redistools import Relay
from .wsclient import WSClient, connect

__all__ = ["own_redis_server", "redis_server", "start"]  # fixtures, imported to be found

TIMEOUT = 5.0

APP = """
import attrs

from wsroute import App, Connection

app = App(broker_state_events=True)


@attrs.frozen
class Shout:
    room: str
    text: str


@app.broadcast("say")
async def say(n: int) -> int:
    return n


@app.broadcast("shout", topic=lambda shout, conn: f"room:{shout.room}")
async def shout(shout: Shout) -> Shout:
    return shout


@app.direct("join")
async def join(room: str, conn: Connection) -> str:
    await conn.subscribe(f"room:{room}")
    return room


@app.direct("leave")
async def leave(room: str, conn: Connection) -> str:
    await conn.unsubscribe(f"room:{room}")
    return room


@app.direct("ping")
async def ping() -> str:
    return "pong"
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "project", {"app.py": APP})


async def run_two(start: StartServer, app_dir: Path, url: str) -> tuple[Server, Server]:
    servers = [
        await start("run", "app:app", "--port", "0", "--broker", url, cwd=app_dir) for _ in range(2)
    ]
    for server in servers:
        await server.wait_listening()
    return servers[0], servers[1]


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    with trio.move_on_after(TIMEOUT):
        while not await check():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"{what}: not within {TIMEOUT:g} s")


def numsub_is(redis: RedisServer, expected: dict[str, int]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await redis.numsub(*expected) == expected

    return check


async def events(client: WSClient, type: str, count: int) -> list[Any]:
    """The data of the next ``count`` events of ``type``; other frames are skipped."""
    found = []
    with trio.fail_after(TIMEOUT):
        while len(found) < count:
            frame = await client.recv()
            if frame.get("type") == type and "ok" not in frame:
                found.append(frame["data"])
    return found


async def test_broadcasts_reach_every_client_of_both_processes_once_in_order(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    one, two = await run_two(start, app_dir, redis_server.url)
    port_a, port_b = await one.wait_listening(), await two.wait_listening()
    async with (
        connect(port_a) as a1,
        connect(port_a) as a2,
        connect(port_b) as b1,
        connect(port_b) as b2,
    ):
        await wait_until(numsub_is(redis_server, {"wsroute:all": 2}), "both processes subscribe")
        for n in range(20):  # sent without waiting: the replies and events interleave
            await a1.send({"type": "say", "id": n, "data": n})
        replies = []
        with trio.fail_after(TIMEOUT):
            while len(replies) < 20:
                frame = await a1.recv()
                if "ok" in frame:
                    replies.append(frame)
        assert [(r["id"], r["ok"]) for r in replies] == [(n, True) for n in range(20)]
        sentinel = await a1.request("say", 999, id="sentinel")
        assert sentinel["ok"]
        for client in (a2, b1, b2):  # nothing twice: the sentinel comes right after
            assert await events(client, "say", 21) == [*range(20), 999]


async def test_a_process_receives_only_topics_it_hosts(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    one, two = await run_two(start, app_dir, redis_server.url)
    async with (
        connect(await one.wait_listening()) as a,
        connect(await two.wait_listening()) as b,
    ):
        assert (await a.request("join", "red"))["ok"]
        assert await redis_server.numsub("wsroute:room:red", "wsroute:all") == {
            "wsroute:room:red": 1,  # process one only
            "wsroute:all": 2,
        }
        async with redis_server.client() as client:
            channels = await client.pubsub_channels("wsroute:*")
        assert {"wsroute:all", "wsroute:room:red"} <= channels
        assert not any(
            channel.startswith("wsroute:room:") for channel in channels - {"wsroute:room:red"}
        )
        shout = {"room": "red", "text": "hi"}
        assert (await a.request("shout", shout))["ok"]
        assert await events(a, "shout", 1) == [shout]
        assert (await a.request("say", 1))["ok"]
        assert (await b.recv())["type"] == "say"  # the shout did not come first

        assert (await b.request("join", "red"))["ok"]
        assert await redis_server.numsub("wsroute:room:red") == {"wsroute:room:red": 2}
        assert (await a.request("leave", "red"))["ok"]
        await wait_until(
            numsub_is(redis_server, {"wsroute:room:red": 1}), "process one unsubscribes"
        )
        assert (await b.request("leave", "red"))["ok"]
        await wait_until(numsub_is(redis_server, {"wsroute:room:red": 0}), "both unsubscribed")
        async with redis_server.client() as client:
            assert "wsroute:room:red" not in await client.pubsub_channels("wsroute:*")


async def test_redis_killed_and_restarted_under_two_processes(
    start: StartServer, app_dir: Path, own_redis_server: RedisServer
) -> None:
    redis = own_redis_server
    one, two = await run_two(start, app_dir, redis.url)
    port_a, port_b = await one.wait_listening(), await two.wait_listening()
    async with connect(port_a) as sender, connect(port_a) as other, connect(port_b) as listener:
        await wait_until(numsub_is(redis, {"wsroute:all": 2}), "both processes subscribe")
        assert (await sender.request("say", 1))["ok"]
        assert await events(listener, "say", 1) == [1]

        redis.kill()
        for server in (one, two):
            await server.wait_for(r"WARNING lost the connection to Redis at redis://127\.0\.0\.1")
        assert await events(listener, "broker_state", 1) == [{"state": "disconnected"}]
        refused = await sender.request("say", 2)
        assert refused["ok"] is False and refused["error"]["code"] == "broker_unavailable"
        assert (await other.request("ping"))["data"] == "pong"  # direct requests still work

        await redis.astart()
        back = trio.current_time()
        assert await events(listener, "broker_state", 1) == [{"state": "connected"}]
        for server in (one, two):
            await server.wait_for(r"INFO reconnected to Redis at .* resubscribed \d+ topic")
        assert trio.current_time() - back < TIMEOUT
        assert await redis.numsub("wsroute:all") == {"wsroute:all": 2}
        assert (await sender.request("say", 3))["ok"]
        assert await events(listener, "say", 1) == [3]
    for server in (one, two):
        assert server.process.returncode is None, server.stderr  # nothing crashed


async def test_unreachable_redis_at_start_exits_1_with_one_line(app_dir: Path) -> None:
    port = free_port()
    start = trio.current_time()
    result = await wsroute_cli(
        "run", "app:app", "--port", "0", "--broker", f"redis://127.0.0.1:{port}", cwd=app_dir
    )
    assert trio.current_time() - start < TIMEOUT
    assert_one_line_error(
        result, 1, f"cannot connect to Redis at redis://127.0.0.1:{port}/0", "Connection refused"
    )


async def test_bad_redis_url_is_a_usage_error(app_dir: Path) -> None:
    result = await wsroute_cli(
        "run", "app:app", "--broker", "redis://127.0.0.1/0?give_up=1", cwd=app_dir
    )
    assert_one_line_error(result, 2, "unknown Redis broker option 'give_up'")


async def test_a_process_exits_1_when_redis_stays_away(
    start: StartServer, app_dir: Path, own_redis_server: RedisServer
) -> None:
    redis = own_redis_server
    server = await start(
        "run", "app:app", "--port", "0", "--broker", f"{redis.url}?give_up_after=0.5", cwd=app_dir
    )
    async with connect(await server.wait_listening()) as client:
        assert (await client.request("ping"))["data"] == "pong"
        redis.kill()
        assert await server.exit_code() == 1
    last = server.lines[-1]
    assert last.startswith(
        f"wsroute: error: lost the connection to Redis at redis://127.0.0.1:{redis.port}/0"
        " and could not reconnect within 0.5 s: "
    ), server.stderr
    assert "Traceback" not in server.stderr


#: Bound on a reconnection and its catch-up: the backoff may reach 2 s on a loaded host.
CATCHUP_TIMEOUT = 20.0

KEPT_APP = """
from wsroute import App, Connection, History

app = App(history={"room:*": History(size=1000, ttl=300)}, broker_state_events=True)


@app.broadcast("say", topic=lambda n, conn: "room:red")
async def say(n: int) -> int:
    return n


@app.direct("join")
async def join(room: str, conn: Connection) -> str:
    await conn.subscribe(f"room:{room}")
    return room
"""


async def broker_state(client: WSClient, state: str) -> None:
    """Skip to the ``broker_state`` event saying ``state``; nothing of the topic may come
    before it."""
    with trio.fail_after(TIMEOUT):
        while True:
            frame = await client.recv()
            assert frame.get("topic") != "room:red", frame
            if frame.get("type") == "broker_state":
                assert frame["data"] == {"state": state}
                return


async def replies_to(client: WSClient, count: int) -> list[Any]:
    """The next ``count`` replies, events skipped."""
    replies: list[Any] = []
    with trio.fail_after(TIMEOUT):
        while len(replies) < count:
            frame = await client.recv()
            if "ok" in frame:
                replies.append(frame)
    return replies


async def topic_events(client: WSClient, count: int) -> list[Any]:
    """The next ``count`` frames of topic ``room:red``, skipping ``broker_state`` events
    and replies."""
    found: list[Any] = []
    with trio.fail_after(CATCHUP_TIMEOUT):
        while len(found) < count:
            frame = await client.recv(CATCHUP_TIMEOUT)
            if "ok" not in frame and frame.get("type") != "broker_state":
                found.append(frame)
    return found


async def test_a_process_cut_off_from_redis_catches_its_client_up_on_what_another_published(
    start: StartServer, tmp_path: Path, own_redis_server: RedisServer
) -> None:
    redis = own_redis_server
    project = write(tmp_path / "kept", {"app.py": KEPT_APP})
    relay = Relay(redis.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        one = await start("run", "app:app", "--port", "0", "--broker", relay.url, cwd=project)
        two = await start("run", "app:app", "--port", "0", "--broker", redis.url, cwd=project)
        port_a, port_b = await one.wait_listening(), await two.wait_listening()
        async with connect(port_a) as listener, connect(port_b) as sender:
            assert (await listener.request("join", "red"))["ok"]
            assert (await sender.request("say", 0))["ok"]
            [first] = await topic_events(listener, 1)
            assert (first["type"], first["data"], first["offset"]) == ("say", 0, 1)
            epoch = first["epoch"]

            relay.cut()
            await broker_state(listener, "disconnected")
            for n in range(1, 51):  # sent without waiting, then every reply awaited
                await sender.send({"type": "say", "id": n, "data": n})
            replies = await replies_to(sender, 50)
            assert [(r["id"], r["ok"]) for r in replies] == [(n, True) for n in range(1, 51)]
            relay.mend()

            *missed, marker = await topic_events(listener, 51)
            assert [(e["type"], e["data"], e["offset"], e["epoch"]) for e in missed] == [
                ("say", n, n + 1, epoch) for n in range(1, 51)
            ]
            assert (marker["type"], marker["topic"]) == ("wsroute.recovery", "room:red")
            assert marker["data"] == {
                "recovered": True,
                "offset": 51,
                "epoch": epoch,
                "missed": 50,
            }
            assert (await sender.request("say", 51, id="live"))["ok"]
            [live] = await topic_events(listener, 1)
            assert (live["type"], live["data"], live["offset"]) == ("say", 51, 52)
            await one.wait_for(r"INFO reconnected to Redis at .* resubscribed \d+ topic")
        nursery.cancel_scope.cancel()
    for server in (one, two):
        assert server.process.returncode is None, server.stderr  # nothing crashed
