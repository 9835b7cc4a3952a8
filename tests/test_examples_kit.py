"""Every route of the examples, through the in-memory test kit (wsroute.testing).

tests/test_examples.py covers the same apps over real sockets; here they run the way
a user of wsroute would test them: no ports, mock clock, two "processes" on one broker.
"""

from __future__ import annotations

import pytest
import trio

from wsroute.brokers import MemoryBroker
from wsroute.testing import CloseInfo, Event, RequestError, open_client

from .test_examples import load_example


@pytest.fixture
def items(monkeypatch):
    return load_example("items", monkeypatch)


@pytest.fixture
def chat(monkeypatch):
    return load_example("chat", monkeypatch)


@pytest.fixture
def chat_pair(monkeypatch):
    """Two chat processes sharing one broker."""
    broker = MemoryBroker()
    first, second = load_example("chat", monkeypatch), load_example("chat", monkeypatch)
    first.app.broker = second.app.broker = broker
    return first, second


# -- examples/items -------------------------------------------------------------------------


async def test_items_every_route(items, autojump_clock):
    async with open_client(items.app) as alice, open_client(items.app) as bob:
        for client in (alice, bob):
            welcome = await client.expect_event("welcome")
            assert set(welcome.data) == {"connection"}
        assert await alice.request("list_items") == []
        created = await alice.request("create_item", {"name": "apple"})
        assert created == {"id": 1, "name": "apple"}
        assert await bob.expect_event("create_item") == Event("create_item", "items", created)
        await alice.expect_event("create_item")
        assert await bob.request("get_item", {"id": 1}) == created
        assert await bob.request("list_items") == [created]
        assert await bob.request("delete_item", {"id": 1}) == {"id": 1}
        assert (await alice.expect_event("delete_item")).data == {"id": 1}
        await bob.expect_event("delete_item")
        await alice.expect_no_message()
        await bob.expect_no_message()


@pytest.mark.parametrize(
    ("type", "data", "code"),
    [
        ("get_item", {"id": 99}, "not_found"),
        ("delete_item", {"id": 99}, "not_found"),
        ("create_item", {"name": "  "}, "empty_name"),
        ("create_item", {"name": 1}, "invalid_data"),
        ("get_item", {"id": "1"}, "invalid_data"),
        ("list_items", {"x": 1}, "invalid_data"),
    ],
)
async def test_items_errors(items, type, data, code, autojump_clock):
    async with open_client(items.app) as client:
        with pytest.raises(RequestError) as caught:
            await client.request(type, data)
        assert caught.value.code == code


# -- examples/chat ---------------------------------------------------------------------------


async def join(client, room: str, nick: str) -> dict:
    roster = await client.request("join", {"room": room, "nick": nick})
    await client.expect_event("joined", topic=f"room:{room}")
    return roster


async def test_chat_rooms(chat, autojump_clock):
    async with (
        open_client(chat.app, query={"user": "ada"}) as ada,
        open_client(chat.app, query={"user": "bob"}) as bob,
        open_client(chat.app) as eve,
    ):
        with pytest.raises(RequestError, match="not_in_room"):
            await ada.request("say", {"text": "nobody hears"})
        assert await join(ada, "lobby", "ada") == {"room": "lobby", "nicks": ["ada"]}
        assert await join(bob, "lobby", "bob") == {"room": "lobby", "nicks": ["ada", "bob"]}
        assert (await ada.expect_event("joined")).data == {"room": "lobby", "nick": "bob"}
        await join(eve, "attic", "eve")
        await ada.send("say", {"text": "hi"})
        for client in (ada, bob):
            assert (await client.expect_event("say")).data == {
                "room": "lobby",
                "nick": "ada",
                "text": "hi",
            }
        await eve.expect_no_message()
        assert await bob.request("who") == {"room": "lobby", "nicks": ["ada", "bob"]}
        assert await bob.request("leave") == {"room": "lobby", "nick": "bob"}
        assert (await ada.expect_event("left")).data == {"room": "lobby", "nick": "bob"}
        await bob.expect_no_message()


async def test_chat_whisper_reaches_every_connection_of_the_user(chat_pair, autojump_clock):
    first, second = chat_pair
    async with (
        open_client(first.app, query={"user": "ada"}) as ada,
        open_client(first.app, query={"user": "bob"}) as bob_here,
        open_client(second.app, query={"user": "bob"}) as bob_there,
        open_client(second.app, query={"user": "cat"}) as cat,
        open_client(first.app) as anonymous,
    ):
        sent = await ada.request("whisper", {"to": "bob", "text": "psst"})
        assert sent == {"to": "bob", "text": "psst"}
        for client in (bob_here, bob_there):
            assert await client.expect_event("whisper") == Event(
                "whisper", None, {"from": "ada", "text": "psst"}
            )
        for client in (ada, cat, anonymous):
            await client.expect_no_message()
        with pytest.raises(RequestError, match="anonymous"):
            await anonymous.request("whisper", {"to": "bob", "text": "?"})


async def test_chat_moderator_kicks_a_user_everywhere(chat_pair, autojump_clock):
    first, second = chat_pair
    async with (
        open_client(first.app, query={"user": "mod"}) as mod,
        open_client(first.app, query={"user": "bob"}) as bob_here,
        open_client(second.app, query={"user": "bob"}) as bob_there,
        open_client(second.app, query={"user": "cat"}) as cat,
    ):
        await join(cat, "lobby", "cat")
        await join(bob_there, "lobby", "bob")
        await cat.expect_event("joined")
        with pytest.raises(RequestError, match="forbidden"):
            await cat.request("kick", {"user": "bob"})
        assert await mod.request("kick", {"user": "bob", "reason": "spam"}) == {
            "user": "bob",
            "reason": "spam",
        }
        for client in (bob_here, bob_there):
            assert (await client.expect_event("kicked")).data == {"by": "mod", "reason": "spam"}
            assert await client.wait_closed() == CloseInfo(4003, "spam")
        # The kicked connection left its room before closing: the others were told.
        assert (await cat.expect_event("left")).data == {"room": "lobby", "nick": "bob"}
        await trio.sleep(1)
        assert await cat.request("who") == {"room": "lobby", "nicks": ["cat"]}
        assert second.rooms == {"lobby": {next(iter(second.rooms["lobby"])): "cat"}}
