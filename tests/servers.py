"""Shared by the tests that serve an app over real sockets (driven by the `websockets`
library, ``tests/wsclient.py``): an app with one route of each kind, a recorder of
connection endings, and the "nothing else is queued" check."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from wsroute import App, Connection, Disconnect, HandlerError

from .wsclient import WSClient


@attrs.frozen
class Item:
    id: int
    name: str


async def recv_all(client: WSClient, count: int) -> list[Any]:
    return [await client.recv() for _ in range(count)]


async def assert_nothing_pending(client: WSClient) -> None:
    """The next frame is the reply to a fresh request, so nothing was queued before it."""
    await client.send({"type": "ping", "id": "sentinel"})
    assert await client.recv() == {"type": "ping", "id": "sentinel", "ok": True, "data": "pong"}


def items_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    @app.direct("get")
    async def get(item_id: int) -> Item:
        if item_id != 1:
            raise HandlerError("not_found", f"no item {item_id}", details={"id": item_id})
        return Item(1, "apple")

    @app.broadcast("create")
    async def create(item: Item) -> Item:
        return item

    @app.direct("push")
    async def push(conn: Connection) -> None:
        await conn.send("pushed", {"n": 1})
        return None

    @app.direct("crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    return app


class Recorder:
    def __init__(self, app: App) -> None:
        self.connected: list[str] = []
        self.ended: list[tuple[str, Disconnect]] = []
        self._changed = trio.Event()

        @app.on_connect
        async def on_connect(conn: Connection) -> None:
            self.connected.append(conn.id)

        @app.on_disconnect
        async def on_disconnect(conn: Connection, reason: Disconnect) -> None:
            self.ended.append((conn.id, reason))
            self._changed.set()

    async def wait_ended(self, count: int = 1) -> list[Disconnect]:
        with trio.fail_after(5):
            while len(self.ended) < count:
                self._changed = trio.Event()
                await self._changed.wait()
        return [reason for _, reason in self.ended]
