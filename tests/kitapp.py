"""The app the test kit's own tests drive (tests/test_testing*.py): items to list and
create, a kick, a whoami, and a log of how connections ended."""

from __future__ import annotations

from typing import Any

import attrs

from wsroute import App, Connection, Disconnect, HandlerError
from wsroute.brokers import MemoryBroker


@attrs.frozen
class CreateItem:
    name: str


@attrs.frozen
class Item:
    id: int
    name: str


def make_app(broker: MemoryBroker | None = None) -> App:
    app = App(broker=broker)
    items: dict[int, Item] = {}
    app.state_log = []  # type: ignore[attr-defined]

    @app.direct("list_items")
    async def list_items() -> list[Item]:
        return list(items.values())

    @app.broadcast("create_item")
    async def create_item(msg: CreateItem) -> Item:
        if not msg.name.strip():
            raise HandlerError("empty_name", "name must not be empty", details={"field": "name"})
        item = Item(len(items) + 1, msg.name)
        items[item.id] = item
        return item

    @app.direct("kick")
    async def kick(conn: Connection) -> None:
        await conn.close(4001, "kicked")

    @app.direct("whoami")
    async def whoami(conn: Connection) -> dict[str, Any]:
        return {
            "path": conn.request.path,
            "query": dict(conn.request.query),
            "token": conn.request.headers.get("x-token"),
            "remote": list(conn.request.remote) if conn.request.remote else None,
            "subprotocols": list(conn.request.subprotocols),
        }

    @app.on_disconnect
    async def gone(conn: Connection, reason: Disconnect) -> None:
        app.state_log.append(reason)  # type: ignore[attr-defined]

    return app
