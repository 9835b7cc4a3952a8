"""Every route of the example apps, over real sockets.

The examples keep their state in module globals and an App serves only once at a
time, so each test loads a fresh copy of the example module under a unique name.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

from wsroute import App, Connection

from .wsclient import WSClient, connect

Serve = Callable[[App], Awaitable[int]]
Frame = dict[str, Any]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``examples/<name>/app.py`` as a new module with its own globals."""
    module_name = f"example_{name}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while the test runs, so annotations resolve like a normal import.
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def items(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_example("items", monkeypatch)


@pytest.fixture
def chat(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_example("chat", monkeypatch)


async def event_and_reply(
    client: WSClient, type: str, data: Any, id: int | str
) -> tuple[Frame, Frame]:
    """Send a broadcast with an id; return its event and its ack, whichever came first."""
    await client.send({"type": type, "id": id, "data": data})
    frames = [await client.recv(), await client.recv()]
    events = [frame for frame in frames if "ok" not in frame]
    replies = [frame for frame in frames if frame.get("id") == id and "ok" in frame]
    assert len(events) == 1 and len(replies) == 1, frames
    return events[0], replies[0]


async def assert_quiet(client: WSClient, probe: str) -> None:
    """Nothing is waiting for ``client``: the next frame is the reply to a new request."""
    await client.send({"type": probe, "id": "probe"})
    frame = await client.recv()
    assert frame.get("id") == "probe" and "ok" in frame, frame


# -- examples/items ------------------------------------------------------------------


@asynccontextmanager
async def items_client(port: int) -> AsyncIterator[WSClient]:
    """A client of the items app, past its welcome event."""
    async with connect(port) as client:
        welcome = await client.recv()
        assert welcome["type"] == "welcome" and set(welcome) == {"type", "data"}
        yield client


async def test_items_welcome_names_the_connection(items: ModuleType, serve: Serve) -> None:
    port = await serve(items.app)
    async with connect(port) as client:
        welcome = await client.recv()
        assert welcome == {"type": "welcome", "data": {"connection": items.app.connections[0].id}}


async def test_items_list_and_get(items: ModuleType, serve: Serve) -> None:
    port = await serve(items.app)
    async with items_client(port) as client:
        assert await client.request("list_items", id=1) == {
            "type": "list_items",
            "id": 1,
            "ok": True,
            "data": [],
        }
        await event_and_reply(client, "create_item", {"name": "apple"}, id=2)
        await event_and_reply(client, "create_item", {"name": "pear"}, id=3)
        listed = await client.request("list_items", id=4)
        assert listed["data"] == [{"id": 1, "name": "apple"}, {"id": 2, "name": "pear"}]
        assert await client.request("get_item", {"id": 2}, id=5) == {
            "type": "get_item",
            "id": 5,
            "ok": True,
            "data": {"id": 2, "name": "pear"},
        }
        assert await client.request("get_item", {"id": 9}, id=6) == {
            "type": "get_item",
            "id": 6,
            "ok": False,
            "error": {"code": "not_found", "message": "no item with id 9"},
        }
        bad = await client.request("get_item", {"id": "2"}, id=7)
        assert bad["error"]["code"] == "invalid_data"
        assert bad["error"]["details"] == [
            {"path": "$.id", "message": "expected an integer, got string"}
        ]
        # list_items takes no data.
        extra = await client.request("list_items", {"page": 1}, id=8)
        assert extra["error"]["code"] == "invalid_data"


async def test_items_create_publishes_and_acks(items: ModuleType, serve: Serve) -> None:
    port = await serve(items.app)
    async with items_client(port) as client:
        event, reply = await event_and_reply(client, "create_item", {"name": "apple"}, id="c1")
        assert event == {
            "type": "create_item",
            "topic": "items",
            "data": {"id": 1, "name": "apple"},
        }
        assert reply == {"type": "create_item", "id": "c1", "ok": True, "data": event["data"]}
        assert items.items == {1: items.Item(1, "apple")}
        # Without an id: the event only, no ack.
        await client.send({"type": "create_item", "data": {"name": "fig"}})
        assert await client.recv() == {
            "type": "create_item",
            "topic": "items",
            "data": {"id": 2, "name": "fig"},
        }
        await assert_quiet(client, "list_items")


async def test_items_create_rejects_bad_payloads(items: ModuleType, serve: Serve) -> None:
    port = await serve(items.app)
    async with items_client(port) as client, items_client(port) as other:
        empty = await client.request("create_item", {"name": "  "}, id=1)
        assert empty["error"] == {"code": "empty_name", "message": "name must not be empty"}
        wrong = await client.request("create_item", {"name": 5, "colour": "red"}, id=2)
        assert wrong["error"]["code"] == "invalid_data"
        assert wrong["error"]["details"] == [
            {"path": "$.name", "message": "expected a string, got number"},
            {"path": "$", "message": "extra fields found (colour)"},
        ]
        missing = await client.request("create_item", {}, id=3)
        assert missing["error"]["details"] == [
            {"path": "$.name", "message": "required field missing"}
        ]
        absent = await client.request("create_item", id=4)
        assert absent["error"]["details"] == [
            {"path": "$", "message": "expected an object, got null"}
        ]
        # Errors are sent even without an id, and nothing was published or stored.
        await client.send({"type": "create_item", "data": {"name": ""}})
        assert await client.recv() == {
            "type": "create_item",
            "ok": False,
            "error": {"code": "empty_name", "message": "name must not be empty"},
        }
        await assert_quiet(client, "list_items")
        await assert_quiet(other, "list_items")
        assert items.items == {}


async def test_items_delete(items: ModuleType, serve: Serve) -> None:
    port = await serve(items.app)
    async with items_client(port) as client:
        await event_and_reply(client, "create_item", {"name": "apple"}, id=1)
        event, reply = await event_and_reply(client, "delete_item", {"id": 1}, id=2)
        assert event == {"type": "delete_item", "topic": "items", "data": {"id": 1}}
        assert reply == {"type": "delete_item", "id": 2, "ok": True, "data": {"id": 1}}
        assert (await client.request("list_items", id=3))["data"] == []
        gone = await client.request("delete_item", {"id": 1}, id=4)
        assert gone["error"] == {"code": "not_found", "message": "no item with id 1"}
        await assert_quiet(client, "list_items")


async def test_items_clients_see_each_others_changes(items: ModuleType, serve: Serve) -> None:
    port = await serve(items.app)
    async with items_client(port) as alice, items_client(port) as bob:
        created, _ = await event_and_reply(alice, "create_item", {"name": "apple"}, id=1)
        assert await bob.recv() == created
        deleted, _ = await event_and_reply(bob, "delete_item", {"id": 1}, id=2)
        assert (
            await alice.recv()
            == deleted
            == {
                "type": "delete_item",
                "topic": "items",
                "data": {"id": 1},
            }
        )
        # A failed request is answered to its sender only.
        assert (await bob.request("delete_item", {"id": 1}, id=3))["ok"] is False
        await assert_quiet(alice, "list_items")
        await assert_quiet(bob, "list_items")


# -- examples/chat -------------------------------------------------------------------


async def join(client: WSClient, room: str, nick: str, id: int | str = "join") -> Frame:
    """Join ``room``; check the joiner's own ``joined`` event and return the reply."""
    event, reply = await event_and_reply(client, "join", {"room": room, "nick": nick}, id)
    assert event == {
        "type": "joined",
        "topic": f"room:{room}",
        "data": {"room": room, "nick": nick},
    }
    assert reply["ok"] is True, reply
    return reply


def presence(kind: str, room: str, nick: str) -> Frame:
    return {"type": kind, "topic": f"room:{room}", "data": {"room": room, "nick": nick}}


async def test_chat_join_replies_with_the_room(chat: ModuleType, serve: Serve) -> None:
    port = await serve(chat.app)
    async with connect(port) as ada, connect(port) as bob:
        assert await join(ada, "lobby", "ada", id=1) == {
            "type": "join",
            "id": 1,
            "ok": True,
            "data": {"room": "lobby", "nicks": ["ada"]},
        }
        reply = await join(bob, "lobby", "bob")
        assert reply["data"] == {"room": "lobby", "nicks": ["ada", "bob"]}
        assert await ada.recv() == presence("joined", "lobby", "bob")
        assert list(chat.rooms["lobby"].values()) == ["ada", "bob"]
        await assert_quiet(ada, "who")
        await assert_quiet(bob, "who")


async def test_chat_join_validates(chat: ModuleType, serve: Serve) -> None:
    port = await serve(chat.app)
    async with connect(port) as client:
        no_room = await client.request("join", {"room": " ", "nick": "ada"}, id=1)
        assert no_room["error"]["code"] == "invalid_room"
        no_nick = await client.request("join", {"room": "lobby", "nick": ""}, id=2)
        assert no_nick["error"]["code"] == "invalid_nick"
        partial = await client.request("join", {"room": "lobby"}, id=3)
        assert partial["error"]["code"] == "invalid_data"
        assert partial["error"]["details"] == [
            {"path": "$.nick", "message": "required field missing"}
        ]
        assert chat.rooms == {}
        await assert_quiet(client, "who")


async def test_chat_say_reaches_only_that_room(chat: ModuleType, serve: Serve) -> None:
    port = await serve(chat.app)
    async with connect(port) as ada, connect(port) as bob, connect(port) as cy:
        await join(ada, "lobby", "ada")
        await join(bob, "lobby", "bob")
        assert await ada.recv() == presence("joined", "lobby", "bob")
        await join(cy, "kitchen", "cy")
        line = {
            "type": "say",
            "topic": "room:lobby",
            "data": {"room": "lobby", "nick": "ada", "text": "hi"},
        }
        event, reply = await event_and_reply(ada, "say", {"text": "hi"}, id=5)
        assert event == line
        assert reply == {"type": "say", "id": 5, "ok": True, "data": line["data"]}
        assert await bob.recv() == line
        # Without an id the sender gets the event and no ack.
        await bob.send({"type": "say", "data": {"text": "yo"}})
        expected = {**line, "data": {"room": "lobby", "nick": "bob", "text": "yo"}}
        assert await bob.recv() == expected
        assert await ada.recv() == expected
        for client in (ada, bob, cy):
            await assert_quiet(client, "who")


async def test_chat_needs_a_room_first(chat: ModuleType, serve: Serve) -> None:
    port = await serve(chat.app)
    async with connect(port) as client:
        not_in_room = {"code": "not_in_room", "message": "join a room first"}
        for type in ("say", "who", "leave"):
            data = {"text": "hi"} if type == "say" else None
            reply = await client.request(type, data, id=type)
            assert reply == {"type": type, "id": type, "ok": False, "error": not_in_room}
        # A broadcast without an id still gets its error.
        await client.send({"type": "say", "data": {"text": "hi"}})
        assert await client.recv() == {"type": "say", "ok": False, "error": not_in_room}


async def test_chat_who(chat: ModuleType, serve: Serve) -> None:
    port = await serve(chat.app)
    async with connect(port) as ada, connect(port) as bob:
        await join(ada, "lobby", "ada")
        await join(bob, "lobby", "bob")
        assert await ada.recv() == presence("joined", "lobby", "bob")
        assert await ada.request("who", id=1) == {
            "type": "who",
            "id": 1,
            "ok": True,
            "data": {"room": "lobby", "nicks": ["ada", "bob"]},
        }
        assert (await bob.request("who", id=2))["data"]["nicks"] == ["ada", "bob"]


async def test_chat_leave(chat: ModuleType, serve: Serve) -> None:
    port = await serve(chat.app)
    async with connect(port) as ada, connect(port) as bob:
        await join(ada, "lobby", "ada")
        await join(bob, "lobby", "bob")
        assert await ada.recv() == presence("joined", "lobby", "bob")
        assert await bob.request("leave", id=1) == {
            "type": "leave",
            "id": 1,
            "ok": True,
            "data": {"room": "lobby", "nick": "bob"},
        }
        assert await ada.recv() == presence("left", "lobby", "bob")
        assert (await ada.request("who", id=2))["data"]["nicks"] == ["ada"]
        # bob hears nothing from the room any more, and is in no room.
        await event_and_reply(ada, "say", {"text": "still here?"}, id=3)
        await assert_quiet(bob, "who")
        assert (await bob.request("who", id=4))["error"]["code"] == "not_in_room"
        assert (await bob.request("leave", id=5))["error"]["code"] == "not_in_room"
        # The last one out removes the room.
        await ada.request("leave", id=6)
        assert chat.rooms == {}
        await assert_quiet(ada, "who")
        await assert_quiet(bob, "who")


async def test_chat_join_leaves_the_previous_room(chat: ModuleType, serve: Serve) -> None:
    port = await serve(chat.app)
    async with connect(port) as ada, connect(port) as bob:
        await join(ada, "lobby", "ada")
        await join(bob, "lobby", "bob")
        assert await ada.recv() == presence("joined", "lobby", "bob")
        reply = await join(bob, "kitchen", "bobby")
        assert reply["data"] == {"room": "kitchen", "nicks": ["bobby"]}
        assert await ada.recv() == presence("left", "lobby", "bob")
        assert {room: list(m.values()) for room, m in chat.rooms.items()} == {
            "lobby": ["ada"],
            "kitchen": ["bobby"],
        }
        # bob now only hears the kitchen.
        await event_and_reply(ada, "say", {"text": "lobby only"}, id=1)
        event, _ = await event_and_reply(bob, "say", {"text": "kitchen only"}, id=2)
        assert event["topic"] == "room:kitchen"
        await assert_quiet(ada, "who")
        await assert_quiet(bob, "who")


async def test_chat_disconnect_removes_the_member(chat: ModuleType, serve: Serve) -> None:
    ended_send, ended = trio.open_memory_channel[str](8)

    app: App = chat.app

    # Runs after the example's own on_disconnect hook (hooks run in registration order).
    @app.on_disconnect
    async def record(conn: Connection) -> None:
        ended_send.send_nowait(conn.id)

    port = await serve(app)
    async with connect(port) as ada:
        await join(ada, "lobby", "ada")
        async with connect(port) as bob:
            await join(bob, "lobby", "bob")
            assert await ada.recv() == presence("joined", "lobby", "bob")
        # bob closed his connection: ada hears that he left.
        assert await ada.recv() == presence("left", "lobby", "bob")
        with trio.fail_after(5):
            await ended.receive()
        assert {room: list(m.values()) for room, m in chat.rooms.items()} == {"lobby": ["ada"]}
        assert (await ada.request("who", id=1))["data"]["nicks"] == ["ada"]
        # The last member of a room disconnecting removes the room.
        async with connect(port) as cy:
            await join(cy, "kitchen", "cy")
        with trio.fail_after(5):
            await ended.receive()
        assert list(chat.rooms) == ["lobby"]
        await assert_quiet(ada, "who")
