"""Reaching users and connections across app instances that share one broker."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from wsroute import App, Connection, Disconnect, Request
from wsroute._server.addressing import (
    decode_control,
    default_user_id,
    encode_close,
    encode_excluding,
    encode_info,
)
from wsroute.brokers import MemoryBroker
from wsroute.testing import CloseInfo, Event, open_app, open_client


@attrs.frozen
class Kick:
    reason: str


def make_app(broker: MemoryBroker, log: list[Any]) -> App:
    """One "process": users come from the X-User header."""
    app = App(broker=broker)

    @app.accept
    async def accept(request: Request) -> str | None:
        return request.headers.get("x-user")

    @app.direct("whoami")
    async def whoami(conn: Connection) -> dict[str, Any]:
        return {"id": conn.id, "user": conn.user_id}

    @app.broadcast("say", exclude_sender=True)
    async def say(text: str) -> str:
        return text

    @app.info("kick")
    async def kick(msg: Kick, conn: Connection) -> None:
        log.append(("kick", conn.user_id, conn.id))
        await conn.send("kicked", {"reason": msg.reason})
        await conn.close(4003, msg.reason)

    @app.info("note")
    async def note(data: Any, conn: Connection) -> None:
        log.append(("note", conn.id, data))  # sends nothing: the client sees nothing

    @app.info("join")
    async def join(room: str, conn: Connection) -> None:
        await conn.subscribe(f"room:{room}")

    @app.on_disconnect
    async def gone(conn: Connection, reason: Disconnect) -> None:
        log.append(("gone", conn.id, reason))

    return app


async def ids(client: Any) -> str:
    return str((await client.request("whoami"))["id"])


async def test_send_to_user_reaches_every_tab_on_every_instance(autojump_clock):
    broker, log = MemoryBroker(), []
    first, second = make_app(broker, log), make_app(broker, log)
    async with (
        open_client(first, headers={"X-User": "ann"}) as ann1,
        open_client(second, headers={"X-User": "ann"}) as ann2,
        open_client(first, headers={"X-User": "bob"}) as bob,
        open_client(second) as anonymous,
    ):
        assert (await ann1.request("whoami"))["user"] == "ann"
        await first.send_to_user("ann", "dm", {"text": "hi"})
        for client in (ann1, ann2):
            assert await client.expect_event("dm") == Event("dm", None, {"text": "hi"})
        for client in (bob, anonymous):
            await client.expect_no_message()
        await second.send_to_connection(await ids(bob), "ping", 1)
        assert (await bob.expect_event("ping")).data == 1
        await ann1.expect_no_message()


async def test_disconnect_user_closes_all_their_connections(autojump_clock):
    broker, log = MemoryBroker(), []
    first, second = make_app(broker, log), make_app(broker, log)
    async with (
        open_client(first, headers={"X-User": "ann"}) as ann1,
        open_client(second, headers={"X-User": "ann"}) as ann2,
        open_client(second, headers={"X-User": "bob"}) as bob,
    ):
        ann_ids = {await ids(ann1), await ids(ann2)}
        await second.disconnect_user("ann", code=4001, reason="banned")
        assert await ann1.wait_closed() == CloseInfo(4001, "banned")
        assert await ann2.wait_closed() == CloseInfo(4001, "banned")
        assert (await bob.request("whoami"))["user"] == "bob"
        await trio.sleep(1)
        gone = {entry[1]: entry[2] for entry in log if entry[0] == "gone"}
        assert gone.keys() == ann_ids
        assert set(gone.values()) == {Disconnect(4001, "banned", "server")}
        bob_id = await ids(bob)
        await first.disconnect_connection(bob_id, code=4002, reason="bye")
        assert await bob.wait_closed() == CloseInfo(4002, "bye")


async def test_disconnect_rejects_codes_that_cannot_be_sent(autojump_clock):
    app = make_app(MemoryBroker(), [])
    async with open_app(app):
        with pytest.raises(ValueError, match="cannot be sent"):
            await app.disconnect_user("ann", code=1006)


async def test_info_handlers_run_in_the_target_connections(autojump_clock):
    broker, log = MemoryBroker(), []
    first, second = make_app(broker, log), make_app(broker, log)
    async with (
        open_client(first, headers={"X-User": "ann"}) as ann,
        open_client(second, headers={"X-User": "bob"}) as bob,
    ):
        bob_id = await ids(bob)
        await first.tell_user("bob", "kick", {"reason": "spam"})
        assert (await bob.expect_event("kicked")).data == {"reason": "spam"}
        assert await bob.wait_closed() == CloseInfo(4003, "spam")
        assert ("kick", "bob", bob_id) in log
        # An info handler that sends nothing: the client sees nothing.
        ann_id = await ids(ann)
        await second.tell_connection(ann_id, "note", [1, 2])
        await ann.expect_no_message()
        assert ("note", ann_id, [1, 2]) in log


async def test_tell_topic_and_info_handlers_that_subscribe(autojump_clock):
    broker, log = MemoryBroker(), []
    first, second = make_app(broker, log), make_app(broker, log)
    async with open_client(first) as a, open_client(second) as b:
        for client in (a, b):  # answered once set up: subscribed to "all"
            await client.request("whoami")
        await first.tell_topic("all", "join", "lobby")
        await trio.sleep(1)
        await second.publish("room:lobby", "news", "both joined")
        assert (await a.expect_event("news")).topic == "room:lobby"
        assert (await b.expect_event("news")).topic == "room:lobby"


async def test_unknown_info_type_and_bad_info_data_are_logged(autojump_clock, caplog):
    log: list[Any] = []
    app = make_app(MemoryBroker(), log)
    async with open_client(app) as client:
        conn_id = await ids(client)
        await app.tell_connection(conn_id, "nope")
        await app.tell_connection(conn_id, "kick", {"reason": 5})
        await client.expect_no_message()
        assert await client.request("whoami")
    messages = [r.getMessage() for r in caplog.records]
    assert any("no info handler for 'nope'" in m for m in messages)
    assert any("'kick'" in m and "invalid data" in m for m in messages)


async def test_exclude_sender(autojump_clock):
    broker, log = MemoryBroker(), []
    first, second = make_app(broker, log), make_app(broker, log)
    async with (
        open_client(first) as sender,
        open_client(first) as local,
        open_client(second) as remote,
    ):
        assert await sender.request("say", "hello") == "hello"  # still acknowledged
        assert (await local.expect_event("say")).data == "hello"
        assert (await remote.expect_event("say")).data == "hello"
        await sender.expect_no_message()


# -- the pieces ------------------------------------------------------------------------------


@attrs.frozen
class WithId:
    id: int


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, None),
        ("ann", "ann"),
        (42, "42"),
        (True, None),
        ({"id": 7, "name": "x"}, "7"),
        ({"name": "no id"}, None),
        (WithId(9), "9"),
        (object(), None),
    ],
)
def test_default_user_id(user, expected):
    assert default_user_id(user) == expected


async def test_custom_user_id(autojump_clock):
    app = App(user_id=lambda user: user["email"] if user else None)

    @app.accept
    async def accept(request: Request) -> dict[str, str]:
        return {"email": "ann@example.com"}

    async with open_client(app) as client:
        await app.send_to_user("ann@example.com", "hello")
        assert (await client.expect_event("hello")).type == "hello"


def test_broker_message_encoding():
    frame = b'{"type":"x","data":1}'
    assert encode_excluding("abc", frame) == b"\x01abc\n" + frame
    info = decode_control(encode_info("kick", {"a": 1}))
    assert (info.op, info.type, info.data) == ("info", "kick", {"a": 1})
    close = decode_control(encode_close(4000, "r"))
    assert (close.op, close.code, close.reason) == ("close", 4000, "r")
    with pytest.raises(ValueError):
        decode_control(b"\x02not json")
    with pytest.raises(ValueError):
        decode_control(b'\x02{"op": "explode"}')


def test_info_registration_errors():
    from wsroute import RegistrationError

    app = App()

    @app.info("kick")
    async def kick(conn: Connection) -> None: ...

    with pytest.raises(RegistrationError, match="already registered"):

        @app.info("kick")
        async def kick_again(conn: Connection) -> None: ...
