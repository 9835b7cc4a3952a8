"""The one error boundary around handlers (``wsroute._server.dispatch``): what each
message is answered with, direct and broadcast routes, and every error reply.

Envelope shapes and error replies are checked over real sockets (the `websockets`
client); the throttled broker warning and the quieter paths on the in-memory client
under the autojump clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from wsroute import App, BrokerError, Connection, HandlerError
from wsroute.brokers import BrokerSession, MemoryBroker
from wsroute.testing import CloseInfo, ErrorReply, RequestError, open_client

from .servers import Item, assert_nothing_pending, items_app, recv_all
from .wsclient import connect

# -- envelope shapes ---------------------------------------------------------------


async def test_reply_shapes_with_and_without_id(serve):
    port = await serve(items_app())
    async with connect(port) as client:
        await client.send({"type": "get", "id": 7, "data": 1})
        assert await client.recv() == {
            "type": "get",
            "id": 7,
            "ok": True,
            "data": {"id": 1, "name": "apple"},
        }
        await client.send({"type": "get", "id": "req-a", "data": 1})
        assert (await client.recv())["id"] == "req-a"
        await client.send({"type": "get", "data": 1})
        assert await client.recv() == {
            "type": "get",
            "ok": True,
            "data": {"id": 1, "name": "apple"},
        }


async def test_broadcast_event_and_ack_shapes(serve):
    port = await serve(items_app())
    async with connect(port) as alice, connect(port) as bob:
        await alice.send({"type": "create", "id": 3, "data": {"id": 5, "name": "pear"}})
        frames = await recv_all(alice, 2)
        event = {"type": "create", "topic": "all", "data": {"id": 5, "name": "pear"}}
        ack = {"type": "create", "id": 3, "ok": True, "data": {"id": 5, "name": "pear"}}
        assert sorted(frames, key=json.dumps) == sorted([event, ack], key=json.dumps)
        assert await bob.recv() == event
        # Without an id there is no acknowledgement, only the event.
        await alice.send({"type": "create", "data": {"id": 6, "name": "fig"}})
        assert (await alice.recv())["data"] == {"id": 6, "name": "fig"}
        assert (await bob.recv())["data"] == {"id": 6, "name": "fig"}
        await assert_nothing_pending(alice)
        await assert_nothing_pending(bob)


# -- error replies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected_type", "expected_id", "code"),
    [
        ("not json", "error", None, "invalid_json"),
        ("", "error", None, "invalid_json"),
        ('{"type": "get", "data": NaN}', "error", None, "invalid_json"),
        ('{"type": "get", "data": Infinity}', "error", None, "invalid_json"),
        ('{"type": "get", "data": 123456789012345678901234567890}', "error", None, "invalid_json"),
        ("[" * 5000 + "]" * 5000, "error", None, "invalid_json"),
        ('{"type": "get", "data": "\\ud800"}', "error", None, "invalid_json"),
        ("[1, 2]", "error", None, "invalid_message"),
        ('"get"', "error", None, "invalid_message"),
        ('{"data": 1}', "error", None, "invalid_message"),
        ('{"type": ""}', "error", None, "invalid_message"),
        ('{"type": 5}', "error", None, "invalid_message"),
        ('{"type": "get", "id": true}', "error", None, "invalid_message"),
        ('{"type": "get", "id": 1.5}', "error", None, "invalid_message"),
        ('{"type": "get", "id": 9007199254740993}', "error", None, "invalid_message"),
        ('{"type": "get", "id": [1]}', "error", None, "invalid_message"),
        ('{"type": "get", "id": "' + "x" * 65 + '"}', "error", None, "invalid_message"),
        ('{"type": "get", "id": 4, "extra": 1}', "get", 4, "invalid_message"),
        ('{"type": "nope", "id": 5}', "nope", 5, "unknown_type"),
        ('{"type": "get", "id": 6, "data": "1"}', "get", 6, "invalid_data"),
        ('{"type": "get", "id": 6, "data": 1.0}', "get", 6, "invalid_data"),
        ('{"type": "ping", "id": 8, "data": {"x": 1}}', "ping", 8, "invalid_data"),
        ('{"type": "get", "id": 9, "data": 2}', "get", 9, "not_found"),
        ('{"type": "crash", "id": 10}', "crash", 10, "internal_error"),
    ],
)
async def test_error_replies(serve, frame, expected_type, expected_id, code):
    port = await serve(items_app())
    async with connect(port) as client:
        await client.send(frame)
        reply = await client.recv()
        assert reply["type"] == expected_type
        assert reply.get("id") == expected_id
        assert ("id" in reply) == (expected_id is not None)
        assert reply["ok"] is False
        assert reply["error"]["code"] == code
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
        assert set(reply) <= {"type", "id", "ok", "error"}
        # An error reply never closes the connection.
        await assert_nothing_pending(client)


async def test_error_details(serve):
    port = await serve(items_app())
    async with connect(port) as client:
        await client.send({"type": "create", "id": 1, "data": {"id": "x", "extra": 2}})
        reply = await client.recv()
        assert reply["error"]["code"] == "invalid_data"
        assert reply["error"]["details"] == [
            {"path": "$.id", "message": "expected an integer, got string"},
            {"path": "$.name", "message": "required field missing"},
            {"path": "$", "message": "extra fields found (extra)"},
        ]
        await client.send({"type": "create", "id": 2, "data": {"id": "x", "name": None}})
        assert (await client.recv())["error"]["details"] == [
            {"path": "$.id", "message": "expected an integer, got string"},
            {"path": "$.name", "message": "expected a string, got null"},
        ]
        await client.send({"type": "get", "id": 3, "data": 4})
        assert (await client.recv())["error"] == {
            "code": "not_found",
            "message": "no item 4",
            "details": {"id": 4},
        }


async def test_internal_error_is_logged_and_leaks_nothing(serve, caplog):
    port = await serve(items_app())
    async with connect(port) as client, connect(port) as other:
        await client.send({"type": "crash", "id": 1})
        reply = await client.recv()
        assert "secret" not in json.dumps(reply)
        await assert_nothing_pending(other)
    failures = [r for r in caplog.records if "crash" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert "secret internals" in str(failures[0].exc_info[1])


async def test_broadcast_without_id_still_gets_errors(serve):
    port = await serve(items_app())
    async with connect(port) as client:
        await client.send({"type": "create", "data": {"id": 1}})
        reply = await client.recv()
        assert reply["type"] == "create" and "id" not in reply
        assert reply["error"]["code"] == "invalid_data"


async def test_broker_failure_gives_broker_unavailable(serve):
    class BrokenBroker(MemoryBroker):
        """A memory broker whose publish always fails, as a down Redis would."""

        def connect(self, **options):  # type: ignore[override]
            manager = super().connect(**options)

            class Wrapped:
                async def __aenter__(self):
                    session = await manager.__aenter__()

                    async def publish(topic: str, data: bytes) -> None:
                        from wsroute import BrokerError

                        raise BrokerError("broker is down")

                    session.publish = publish  # type: ignore[method-assign]
                    return session

                async def __aexit__(self, *exc: object) -> None:
                    await manager.__aexit__(*exc)

            return Wrapped()

    port = await serve(items_app(broker=BrokenBroker()))
    async with connect(port) as client:
        await client.send({"type": "create", "id": 1, "data": {"id": 1, "name": "a"}})
        assert (await client.recv())["error"]["code"] == "broker_unavailable"
        await assert_nothing_pending(client)


# -- direct and broadcast routes of one name ---------------------------------------


async def test_direct_falls_through_to_broadcast_when_it_returns_none(serve):
    app = App()

    @app.direct("item")
    async def lookup(item: Item) -> Item | None:
        return item if item.id == 1 else None

    @app.broadcast("item")
    async def announce(item: Item) -> dict[str, Any]:
        return {"announced": item.name}

    port = await serve(app)
    async with connect(port) as alice, connect(port) as bob:
        # Direct returns a value: it is the reply, nothing is broadcast.
        reply = await alice.request("item", {"id": 1, "name": "a"}, id=1)
        assert reply["data"] == {"id": 1, "name": "a"}
        # Direct returns None: the broadcast handler runs with the same payload.
        await alice.send({"type": "item", "id": 2, "data": {"id": 2, "name": "b"}})
        assert await bob.recv() == {"type": "item", "topic": "all", "data": {"announced": "b"}}
        frames = await recv_all(alice, 2)
        assert {"type": "item", "id": 2, "ok": True, "data": {"announced": "b"}} in frames


async def test_direct_result_is_not_broadcast(serve):
    app = App()

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    @app.direct("item")
    async def lookup(item: Item) -> Item:
        return item

    @app.broadcast("item")
    async def announce(item: Item) -> Item:
        raise AssertionError("must not run")

    port = await serve(app)
    async with connect(port) as alice, connect(port) as bob:
        assert (await alice.request("item", {"id": 1, "name": "a"}))["ok"] is True
        await assert_nothing_pending(bob)


# -- the quieter paths, on the in-memory client ---------------------------------------


class DownBroker(MemoryBroker):
    """A memory broker whose sessions refuse every publish, as a Redis that is down."""

    @asynccontextmanager
    async def connect(self, *, on_state: Any = None) -> AsyncIterator[BrokerSession]:
        async with super().connect(on_state=on_state) as session:

            async def publish(topic: str, data: bytes) -> None:
                await trio.lowlevel.checkpoint()
                raise BrokerError("broker is down")

            session.publish = publish  # type: ignore[method-assign]
            yield session


def broker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "could not be published" in r.getMessage()]


async def test_broker_failures_are_warned_once_per_period_with_the_count_held_back(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = items_app(broker=DownBroker())
    warning = "broadcasts could not be published (e.g. 'create'): broker is down"
    with caplog.at_level(logging.WARNING, logger="wsroute"):
        async with open_client(app) as client:
            for n in range(3):
                await client.send("create", {"id": n, "name": "x"}, id=n)
                reply = await client.expect_reply(n)
                assert isinstance(reply, ErrorReply) and reply.code == "broker_unavailable"
            assert broker_warnings(caplog) == [warning]
            await trio.sleep(10)  # the period is over: the next failure is told, with a count
            await client.send("create", {"id": 9, "name": "x"}, id=9)
            await client.expect_reply(9)
    assert broker_warnings(caplog) == [warning, f"{warning} (2 more since the last warning)"]


async def test_a_handler_whose_own_broker_call_fails_is_not_told_about_a_broadcast(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(broker=DownBroker())

    @app.direct("note")
    async def note(text: str) -> None:
        await app.publish("notes", "note", text)  # fails: the broker is down

    with caplog.at_level(logging.WARNING, logger="wsroute"):
        async with open_client(app) as client:
            await client.send("note", "hi", id=1)
            reply = await client.expect_reply(1)
            assert isinstance(reply, ErrorReply)
            assert (reply.code, reply.message) == (
                "broker_unavailable",
                "the broker is unavailable",
            )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "handlers could not reach the broker (e.g. test_a_handler_whose_own_broker_call_fails"
        "_is_not_told_about_a_broadcast.<locals>.note for 'note'): broker is down"
    ]


async def test_a_handler_stopped_by_its_closing_connection_gets_no_reply_and_no_log(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.direct("leave")
    async def leave(conn: Connection) -> str:
        await conn.close(4000, "bye")
        await conn.subscribe("too-late")  # raises ConnectionClosed: the connection is closing
        return "unreachable"

    with caplog.at_level(logging.DEBUG, logger="wsroute"):
        async with open_client(app) as client:
            await client.send("leave", id=1)
            assert await client.wait_closed() == CloseInfo(4000, "bye")
            await client.expect_no_message()  # no reply, not even an error reply
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_failing_topic_function_is_an_internal_error_and_is_logged(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    def room_of(msg: dict[str, str], conn: Connection) -> str:
        return msg["room"]  # a KeyError without one

    @app.broadcast("say", topic=room_of)
    async def say(msg: dict[str, str]) -> str:
        return msg["text"]

    async with open_client(app) as client:
        with pytest.raises(RequestError) as caught:
            await client.request("say", {"text": "hi"})
        assert (caught.value.code, caught.value.message) == (
            "internal_error",
            "internal server error",
        )
        assert await client.request("say", {"text": "hi", "room": "r"}) == "hi"  # still served
    [failure] = [r for r in caplog.records if r.exc_info]
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], KeyError)
    assert ".say for 'say' failed on connection" in failure.getMessage()


async def test_a_handler_error_in_a_broadcast_publishes_nothing(autojump_clock: Any) -> None:
    app = App()

    @app.broadcast("say")
    async def say(text: str) -> str:
        if not text:
            raise HandlerError("empty", "say something", details={"min": 1})
        return text

    async with open_client(app) as sender, open_client(app) as other:
        with pytest.raises(RequestError) as caught:
            await sender.request("say", "")
        assert (caught.value.code, caught.value.details) == ("empty", {"min": 1})
        await other.expect_no_message()
        await sender.expect_no_message()
