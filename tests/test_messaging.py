"""Pushing from anywhere (``wsroute._server.messaging``): ``app.publish``,
``send_to_*``, ``disconnect_*`` and ``tell_*`` need a running app, check a close
before sending it, and encode data with the app's converter.

tests/test_addressing.py follows these messages across app instances.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio

from wsroute import App, Connection, NotRunningError, Request
from wsroute.brokers import BrokerMessage, MemoryBroker
from wsroute.testing import CloseInfo, Event, open_client


@attrs.define
class Item:
    id: int


async def test_publish_reaches_a_subscriber_through_the_broker() -> None:
    broker = MemoryBroker()
    app = App(broker=broker)
    async with app.running_context(), broker.connect() as session:
        await session.subscribe("t")
        await app.publish("t", "tick", {"n": 1})
        with trio.fail_after(1):
            assert await session.__anext__() == BrokerMessage(
                "t", b'{"type":"tick","topic":"t","data":{"n":1}}'
            )


async def test_publish_unstructures_data_with_the_app_converter() -> None:
    broker = MemoryBroker()
    app = App(broker=broker)
    async with app.running_context(), broker.connect() as session:
        await session.subscribe("items")
        await app.publish("items", "new", [Item(1), Item(2)])
        await app.publish("items", "empty")
        with trio.fail_after(1):
            assert await session.__anext__() == BrokerMessage(
                "items", b'{"type":"new","topic":"items","data":[{"id":1},{"id":2}]}'
            )
            assert await session.__anext__() == BrokerMessage(
                "items", b'{"type":"empty","topic":"items","data":null}'
            )


CALLS: dict[str, Callable[[App], Awaitable[None]]] = {
    "app.publish()": lambda app: app.publish("t", "x"),
    "app.send_to_user()": lambda app: app.send_to_user("ann", "x"),
    "app.send_to_connection()": lambda app: app.send_to_connection("c1", "x"),
    "app.disconnect_user()": lambda app: app.disconnect_user("ann"),
    "app.disconnect_connection()": lambda app: app.disconnect_connection("c1"),
    "app.tell_user()": lambda app: app.tell_user("ann", "x"),
    "app.tell_connection()": lambda app: app.tell_connection("c1", "x"),
    "app.tell_topic()": lambda app: app.tell_topic("t", "x"),
}


@pytest.mark.parametrize("what", list(CALLS))
async def test_every_call_needs_a_running_app(what: str) -> None:
    app = App()
    message = f"^{re.escape(what)} needs a running app: call it while serving$"
    with pytest.raises(NotRunningError, match=message):
        await CALLS[what](app)
    async with app.running_context():
        await CALLS[what](app)
    with pytest.raises(NotRunningError, match=message):
        await CALLS[what](app)


@pytest.mark.parametrize("target", ["user", "connection"])
async def test_disconnect_checks_the_close_before_anything_else(target: str) -> None:
    app = App()  # not running: the close is refused first, with what is wrong with it
    disconnect = app.disconnect_user if target == "user" else app.disconnect_connection
    with pytest.raises(ValueError, match=r"^close code 1005 cannot be sent"):
        await disconnect("x", code=1005)
    with pytest.raises(ValueError, match=r"^close reason must be at most 123 bytes"):
        await disconnect("x", code=4000, reason="x" * 124)


def addressed_app() -> App:
    """Users come from the X-User header; ``note`` echoes its structured data back."""
    app = App(ping_interval=None)

    @app.accept
    async def accept(request: Request) -> str | None:
        return request.headers.get("x-user")

    @app.direct("whoami")
    async def whoami(conn: Connection) -> str:
        return conn.id

    @app.info("note")
    async def note(item: Item, conn: Connection) -> None:
        assert isinstance(item, Item)
        await conn.send("noted", item)

    return app


async def test_data_is_encoded_with_the_app_converter_for_every_target(
    autojump_clock: Any,
) -> None:
    app = addressed_app()
    async with open_client(app, headers={"X-User": "ann"}) as ann, open_client(app) as other:
        ann_id = await ann.request("whoami")
        await app.send_to_user("ann", "dm", Item(1))
        assert await ann.expect_event("dm") == Event("dm", None, {"id": 1})
        await app.send_to_connection(ann_id, "direct", [Item(2)])
        assert await ann.expect_event("direct") == Event("direct", None, [{"id": 2}])
        for n, tell in enumerate(
            [
                lambda: app.tell_user("ann", "note", Item(3)),
                lambda: app.tell_connection(ann_id, "note", Item(4)),
            ],
            start=3,
        ):
            await tell()
            assert await ann.expect_event("noted") == Event("noted", None, {"id": n})
        await other.expect_no_message()
        await app.tell_topic("all", "note", Item(5))
        for client in (ann, other):
            assert await client.expect_event("noted") == Event("noted", None, {"id": 5})


async def test_bytes_reach_info_handlers_and_each_client_in_its_format(
    autojump_clock: Any,
) -> None:
    """Info data crosses the broker as JSON, bytes as base64, which a ``bytes`` field
    reads back; events go to msgpack clients as binary, to JSON ones as base64."""
    app = App(ping_interval=None)
    received: list[bytes] = []

    @app.info("blob")
    async def blob(raw: bytes, conn: Connection) -> None:
        received.append(raw)
        await conn.send("blob", {"raw": raw})

    async with open_client(app, msgpack=True) as binary, open_client(app) as text:
        await app.tell_topic("all", "blob", b"\x00\xff")
        assert await binary.expect_event("blob") == Event("blob", None, {"raw": b"\x00\xff"})
        assert await text.expect_event("blob") == Event("blob", None, {"raw": "AP8="})
        await app.publish("all", "raw", b"\x01")
        assert await binary.expect_event("raw") == Event("raw", "all", b"\x01")
        assert await text.expect_event("raw") == Event("raw", "all", "AQ==")
    assert received == [b"\x00\xff"] * 2


async def test_disconnect_connection_closes_only_that_one(autojump_clock: Any) -> None:
    app = addressed_app()
    async with open_client(app) as leaving, open_client(app) as staying:
        await app.disconnect_connection(await leaving.request("whoami"), code=4002, reason="bye")
        assert await leaving.wait_closed() == CloseInfo(4002, "bye")
        assert isinstance(await staying.request("whoami"), str)
        with trio.move_on_after(1):
            await staying.wait_closed()
            raise AssertionError("the other connection was closed too")
