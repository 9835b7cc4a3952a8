"""The items example: list, get, create and delete items, with live broadcasts.

Run it with ``wsroute run app:app --app-dir examples/items``.
"""

from __future__ import annotations

import attrs

from wsroute import App, Connection, HandlerError

app = App(default_topic="items")


@attrs.frozen
class CreateItem:
    name: str


@attrs.frozen
class ItemRef:
    id: int


@attrs.frozen
class Item:
    id: int
    name: str


@attrs.frozen
class Welcome:
    """Sent to each connection as it opens."""

    connection: str


# Events pushed by the app itself, for its contracts (`wsroute asyncapi app:app`);
# the broadcasts below declare theirs.
app.declare_event("welcome", Welcome, description="Sent to each connection as it opens.")

NOT_FOUND = {"not_found": "no item has this id"}

items: dict[int, Item] = {}
_next_id = 0


@app.on_connect
async def hello(conn: Connection) -> None:
    await conn.send("welcome", Welcome(conn.id))


@app.direct("list_items")
async def list_items() -> list[Item]:
    return list(items.values())


@app.direct("get_item", errors=NOT_FOUND)
async def get_item(ref: ItemRef) -> Item:
    try:
        return items[ref.id]
    except KeyError:
        raise HandlerError("not_found", f"no item with id {ref.id}") from None


@app.broadcast("create_item", errors={"empty_name": "the name is blank"})
async def create_item(msg: CreateItem, conn: Connection) -> Item:
    global _next_id
    if not msg.name.strip():
        raise HandlerError("empty_name", "name must not be empty")
    _next_id += 1
    item = Item(id=_next_id, name=msg.name)
    items[item.id] = item
    return item  # published to every subscriber of the "items" topic


@app.broadcast("delete_item", errors=NOT_FOUND)
async def delete_item(ref: ItemRef) -> ItemRef:
    if items.pop(ref.id, None) is None:
        raise HandlerError("not_found", f"no item with id {ref.id}")
    return ref
