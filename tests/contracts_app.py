"""An app using everything its contracts describe, for tests/test_contracts_*.py:
every kind of route and topic, declared errors and events, route options, bearer
auth, msgpack, history, presence events and broker state events, and the payload
types the strict converter reads. ``wsroute asyncapi contracts_app:app --app-dir tests``.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any, Literal

import attrs

from wsroute import App, Connection, HandlerError, History, Presence, bearer_auth


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@attrs.frozen
class Tag:
    """A label on an item."""

    name: str
    weight: float = 1.0


@attrs.frozen
class CreateItem:
    """What a new item is made of."""

    name: str
    size: Size
    colour: Literal["red", "green"] | None = None
    tags: list[Tag] = attrs.Factory(list)
    scores: dict[int, int] = attrs.Factory(dict)
    where: tuple[float, float] = (0.0, 0.0)
    blob: bytes = b""
    due: datetime.date | None = None


@attrs.frozen
class Item:
    id: int
    name: str
    size: Size
    made: datetime.datetime


@attrs.frozen
class Ref:
    id: int


@attrs.frozen
class Join:
    room: str


@attrs.frozen
class Line:
    room: str
    text: str


def check_token(token: str) -> str | None:
    return token.removeprefix("user-") if token.startswith("user-") else None


app = App(
    default_topic="items",
    max_concurrency=4,
    history={"room:*": History(size=10, ttl=60)},
    presence={"room:*": Presence(events=True)},
    broker_state_events=True,
    asyncapi="/asyncapi.json",
)
app.accept(bearer_auth(check_token))
app.declare_event("welcome", dict[str, str], description="Sent as a connection opens.")
app.declare_event("said", Line, topic="room:{room}", description="Somebody said something.")
app.declare_event("tick", int, topic="clock")

NOT_FOUND = {"not_found": "no item has this id"}
items: dict[int, Item] = {}


@app.on_connect
async def hello(conn: Connection) -> None:
    await conn.send("welcome", {"user": conn.user_id or ""})


@app.direct("get_item", errors=NOT_FOUND, timeout=5, coalesce=True, coalesce_timeout=2)
async def get_item(ref: Ref) -> Item:
    """One item by id."""
    try:
        return items[ref.id]
    except KeyError:
        raise HandlerError("not_found", f"no item {ref.id}") from None


@app.broadcast("create_item", errors=["duplicate"])
async def create_item(msg: CreateItem) -> Item:
    """Makes an item and tells everyone on the items topic."""
    if any(item.name == msg.name for item in items.values()):
        raise HandlerError("duplicate", "an item has this name")
    item = Item(len(items) + 1, msg.name, msg.size, datetime.datetime(2024, 5, 1, 12))
    items[item.id] = item
    return item


@app.direct("item")
async def cached(ref: Ref) -> Item | None:
    """A cached item, or null to let the broadcast load it."""
    return items.get(ref.id)


@app.broadcast("item", exclude_sender=True)
async def refresh(ref: Ref) -> Item | None:
    return items.get(ref.id)


@app.direct("join")
async def join(msg: Join, conn: Connection) -> list[str]:
    conn.state.room = msg.room
    await conn.subscribe(f"room:{msg.room}")
    return sorted(conn.topics)


def room_of(payload: Any, conn: Connection) -> str:
    """The sender's room."""
    return f"room:{conn.state.room}"


@app.broadcast("say", topic=room_of)
async def say(text: str, conn: Connection) -> Line:
    return Line(conn.state.room, text)


@app.broadcast("shout", topic=lambda payload, conn: f"shouts:{conn.id}")
async def shout(text: str) -> str:
    return text.upper()


@app.direct("page")
async def page(n: int = 1) -> list[int]:
    return list(range(n))


@app.direct("echo")
async def echo(anything: Any) -> Any:
    return anything


@app.direct("ping")
async def ping() -> None:
    return None


@app.direct("a strange/type: é")
async def strange(flag: bool | None) -> tuple[int, str]:
    return (1, "x")
