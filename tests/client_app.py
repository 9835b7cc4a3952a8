"""The app the Python client's tests talk to, in-process or as ``wsroute run
client_app:app --app-dir tests``. ``WSROUTE_TEST_DENY`` names a room ``join`` refuses
(so a test can restart the server refusing a room a client joined before)."""

from __future__ import annotations

import os
from typing import Any

import attrs
import trio

from wsroute import App, Connection, HandlerError, bearer_auth

USERS = {"alice-token": "alice", "bob-token": "bob"}


@attrs.frozen
class Say:
    room: str
    text: str


@attrs.frozen
class Said:
    room: str
    text: str
    by: str


@attrs.frozen
class Kick:
    code: int
    reason: str = ""


def make_app() -> App:
    app = App(default_topic=None, max_concurrency=64, max_queued_requests=2048)
    app.accept(bearer_auth(USERS.get))
    joins: list[str] = []

    @app.direct("echo")
    async def echo(data: Any) -> Any:
        return data

    @app.direct("join")
    async def join(room: str, conn: Connection) -> str:
        if room == os.environ.get("WSROUTE_TEST_DENY"):
            raise HandlerError("forbidden", f"room {room} is closed")
        joins.append(room)
        await conn.subscribe(f"room:{room}")
        return room

    @app.direct("joins")
    async def joins_so_far() -> list[str]:
        return joins

    @app.broadcast("say", topic=lambda say, conn: f"room:{say.room}")
    async def say(say: Say, conn: Connection) -> Said:
        return Said(say.room, say.text, conn.user)

    @app.direct("slow")
    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return "slept"

    @app.direct("big")
    async def big(size: int) -> str:
        return "x" * size

    @app.direct("fail")
    async def fail() -> None:
        raise HandlerError("not_found", "nothing here", {"id": 7})

    @app.direct("kick")
    async def kick(kick: Kick, conn: Connection) -> None:
        await conn.close(kick.code, kick.reason)

    @app.direct("junk")
    async def junk(conn: Connection) -> str:
        await conn.send_frame("this is not JSON")
        await conn.send_frame(b"\x00binary")
        await conn.send_frame('{"type": "echo", "id": 999999, "ok": true, "data": null}')
        await conn.send_frame("[1, 2, 3]")
        return "sent"

    return app


app = make_app()
