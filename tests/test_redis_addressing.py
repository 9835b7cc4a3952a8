"""Addressing across real processes: two ``wsroute run`` processes on one Redis.

The same cases as tests/test_addressing.py (which uses two app instances on one
memory broker), now over real sockets, real processes and a real redis-server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .cliproc import StartServer, start, write
from .redisproc import RedisServer, redis_server
from .test_redis_processes import events, numsub_is, run_two, wait_until
from .wsclient import connect

__all__ = ["redis_server", "start"]  # fixtures, imported to be found

APP = """
from wsroute import App, Connection, Request

app = App()


@app.accept
async def identify(request: Request) -> str | None:
    return request.query.get("user")


@app.direct("whoami")
async def whoami(conn: Connection) -> str:
    return conn.id


@app.direct("dm")
async def dm(msg: dict, conn: Connection) -> None:
    await app.send_to_user(msg["to"], "dm", {"from": conn.user_id, "text": msg["text"]})


@app.direct("dm_conn")
async def dm_conn(msg: dict) -> None:
    await app.send_to_connection(msg["to"], "dm", msg["text"])


@app.direct("ban")
async def ban(user: str) -> None:
    await app.disconnect_user(user, code=4001, reason="banned")


@app.direct("drop")
async def drop(conn_id: str) -> None:
    await app.disconnect_connection(conn_id, code=4002, reason="dropped")


@app.direct("poke")
async def poke(user: str) -> None:
    await app.tell_user(user, "poke", "hey")


@app.info("poke")
async def poked(text: str, conn: Connection) -> None:
    await conn.send("poked", {"text": text, "conn": conn.id})


@app.broadcast("say", exclude_sender=True)
async def say(text: str) -> str:
    return text
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "project", {"app.py": APP})


async def test_users_and_connections_are_reached_across_processes(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    one, two = await run_two(start, app_dir, redis_server.url)
    port_a, port_b = await one.wait_listening(), await two.wait_listening()
    async with (
        connect(port_a, "/?user=ann") as ann_a,
        connect(port_b, "/?user=ann") as ann_b,
        connect(port_b, "/?user=bob") as bob,
    ):
        await wait_until(numsub_is(redis_server, {"wsroute:user:ann": 2}), "ann's topic")
        # send_to_user: both of ann's connections, on both processes, and nobody else.
        assert (await bob.request("dm", {"to": "ann", "text": "hi"}))["ok"] is True
        for client in (ann_a, ann_b):
            assert await events(client, "dm", 1) == [{"from": "bob", "text": "hi"}]
        # send_to_connection: exactly that one connection.
        target = (await ann_b.request("whoami", id=2))["data"]
        await ann_a.request("dm_conn", {"to": target, "text": "just you"}, id=3)
        assert await events(ann_b, "dm", 1) == ["just you"]
        # tell_user: the info handler runs in each of ann's connections, with its own id.
        await bob.request("poke", "ann", id=4)
        pokes = [(await events(c, "poked", 1))[0] for c in (ann_a, ann_b)]
        assert {p["text"] for p in pokes} == {"hey"}
        assert len({p["conn"] for p in pokes}) == 2
        # exclude_sender: everyone but the sender, on both processes.
        assert (await ann_a.request("say", "all but me", id=5))["data"] == "all but me"
        assert await events(ann_b, "say", 1) == ["all but me"]
        assert await events(bob, "say", 1) == ["all but me"]
        # ann_a got no event: the next frame for it is the reply to a new request.
        assert (await ann_a.request("whoami", id=6))["id"] == 6
        # disconnect_user: both of ann's connections close with the code, bob stays.
        await bob.request("ban", "ann", id=7)
        assert await ann_a.wait_closed() == (4001, "banned")
        assert await ann_b.wait_closed() == (4001, "banned")
        assert (await bob.request("whoami", id=8))["ok"] is True
        # disconnect_connection: exactly that connection, from the other process.
        async with connect(port_a, "/?user=cat") as cat:
            cat_id = (await cat.request("whoami", id=9))["data"]
            await bob.request("drop", cat_id, id=10)
            assert await cat.wait_closed() == (4002, "dropped")
        assert (await bob.request("whoami", id=11))["ok"] is True


async def test_chat_example_whisper_and_kick_across_processes(
    start: StartServer, redis_server: RedisServer
) -> None:
    chat = Path(__file__).resolve().parent.parent / "examples" / "chat"
    one, two = await run_two(start, chat, redis_server.url)
    port_a, port_b = await one.wait_listening(), await two.wait_listening()
    async with (
        connect(port_a, "/?user=mod") as mod,
        connect(port_a, "/?user=bob") as bob_a,
        connect(port_b, "/?user=bob") as bob_b,
    ):
        await wait_until(numsub_is(redis_server, {"wsroute:user:bob": 2}), "bob's topic")
        assert (await mod.request("whisper", {"to": "bob", "text": "psst"}))["ok"] is True
        for client in (bob_a, bob_b):
            assert await events(client, "whisper", 1) == [{"from": "mod", "text": "psst"}]
        await mod.request("kick", {"user": "bob", "reason": "spam"}, id=2)
        for client in (bob_a, bob_b):
            assert await events(client, "kicked", 1) == [{"by": "mod", "reason": "spam"}]
            assert await client.wait_closed() == (4003, "spam")
