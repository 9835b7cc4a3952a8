"""The test kit's client (``wsroute.testing._client``, opened by ``_open``): in-memory
clients and their expectations. The plugin, the conformance checks, the client's protocol and its
messages have their own modules (tests/test_testing_*.py)."""

from __future__ import annotations

import time

import pytest
import trio

from wsroute import Disconnect
from wsroute.brokers import MemoryBroker
from wsroute.testing import (
    CloseInfo,
    ErrorReply,
    Event,
    ExpectationFailed,
    HandshakeRejected,
    Reply,
    RequestError,
    open_app,
    open_client,
)

from .kitapp import make_app


async def test_the_documented_example(autojump_clock):
    app = make_app()
    async with open_client(app) as alice, open_client(app) as bob:
        item = await alice.request("create_item", {"name": "apple"})
        assert item == {"id": 1, "name": "apple"}
        event = await bob.expect_event("create_item")
        assert event == Event("create_item", "all", {"id": 1, "name": "apple"})
        await alice.expect_event("create_item", topic="all")
        await alice.expect_no_message()
        assert await bob.request("list_items") == [{"id": 1, "name": "apple"}]


async def test_request_error_carries_the_error_reply(autojump_clock):
    app = make_app()
    async with open_client(app) as client:
        with pytest.raises(RequestError) as caught:
            await client.request("create_item", {"name": " "})
        assert (caught.value.code, caught.value.message, caught.value.details) == (
            "empty_name",
            "name must not be empty",
            {"field": "name"},
        )
        with pytest.raises(RequestError) as caught:
            await client.request("create_item", {"name": 5})
        assert caught.value.code == "invalid_data"
        assert caught.value.details == [
            {"path": "$.name", "message": "expected a string, got number"}
        ]
        # What a test that fails on it shows: which field, and why.
        assert str(caught.value) == (
            "invalid_data: data does not match the message type; details:"
            " [{'path': '$.name', 'message': 'expected a string, got number'}]"
        )


async def test_receive_decodes_each_frame_shape(autojump_clock):
    app = make_app()
    async with open_client(app) as client:
        await client.send("list_items", id=3)
        assert await client.receive() == Reply("list_items", 3, [])
        await client.send_raw("{nope")
        reply = await client.receive()
        assert isinstance(reply, ErrorReply)
        assert (reply.type, reply.id, reply.code) == ("error", None, "invalid_json")
        await client.send("create_item", {"name": "x"})
        assert await client.receive() == Event("create_item", "all", {"id": 1, "name": "x"})


async def test_expect_reply_keeps_skipped_frames_in_order(autojump_clock):
    app = make_app()
    async with open_client(app) as client:
        await client.send("create_item", {"name": "a"})
        await client.send("create_item", {"name": "b"})
        await client.send("list_items", id="L")
        reply = await client.expect_reply("L")
        assert isinstance(reply, Reply) and len(reply.data) == 2
        assert (await client.receive()).data == {"id": 1, "name": "a"}  # type: ignore[union-attr]
        assert (await client.receive()).data == {"id": 2, "name": "b"}  # type: ignore[union-attr]


async def test_timeouts_take_no_real_time_under_autojump(autojump_clock):
    app = make_app()
    async with open_client(app) as client:
        started = time.monotonic()
        await client.expect_no_message(timeout=3600)
        with pytest.raises(ExpectationFailed):
            await client.expect_event("never", timeout=3600)
        assert time.monotonic() - started < 2


async def test_failed_expectation_shows_what_arrived(autojump_clock):
    app = make_app()
    async with open_client(app) as client:
        await client.send("create_item", {"name": "pear"})
        with pytest.raises(ExpectationFailed) as caught:
            await client.expect_event("delete_item", timeout=1)
        message = str(caught.value)
        assert "expected event 'delete_item' within 1 s" in message
        assert "Event(type='create_item', topic='all', data={'id': 1, 'name': 'pear'})" in message
        # The frame was kept, so expect_no_message reports it as well.
        with pytest.raises(ExpectationFailed, match="expected no message"):
            await client.expect_no_message()


async def test_closed_exposes_the_servers_close(autojump_clock):
    app = make_app()
    async with open_client(app) as client:
        await client.send("kick", id=1)
        assert await client.wait_closed() == CloseInfo(4001, "kicked")
        assert client.closed == CloseInfo(4001, "kicked")
        assert await client.expect_reply(1) == Reply("kick", 1, None)
        with pytest.raises(ExpectationFailed, match="4001 'kicked'"):
            await client.expect_event("anything")


async def test_binary_frame_is_answered_with_1003(autojump_clock):
    app = make_app()
    async with open_client(app) as client:
        await client.send_raw(b"\x01")
        assert await client.wait_closed() == CloseInfo(1003, "binary frames are not supported")


async def test_client_close_runs_on_disconnect_and_leaves_no_task(autojump_clock):
    app = make_app()
    async with trio.open_nursery() as nursery:
        async with open_client(app) as client:
            assert app.running and len(app.connections) == 1
            await client.close(4000, "done")
        assert not nursery.child_tasks
    assert not app.running
    assert app.state_log == [Disconnect(4000, "done", "client")]  # type: ignore[attr-defined]


async def test_request_metadata(autojump_clock):
    app = make_app()
    async with open_client(
        app,
        path="/ws",
        query={"room": "1"},
        headers={"X-Token": "abc"},
        remote=("10.1.2.3", 5555),
        subprotocols=["chat.v1"],
    ) as client:
        assert await client.request("whoami") == {
            "path": "/ws",
            "query": {"room": "1"},
            "token": "abc",
            "remote": ["10.1.2.3", 5555],
            "subprotocols": ["chat.v1"],
        }


async def test_handshake_rejection_is_typed(autojump_clock):
    app = make_app()
    async with open_app(app):
        assert app._runtime is not None
        app._runtime.drain()  # a draining server refuses new connections with 503
        with pytest.raises(HandshakeRejected) as caught:
            async with open_client(app):
                pass
        assert caught.value.status == 503
        assert caught.value.body == b"server shutting down"


async def test_a_factory_passed_for_an_app_is_refused_with_the_fix(autojump_clock):
    # It failed deep inside: "'function' object has no attribute 'running'".
    with pytest.raises(TypeError) as caught:
        async with open_client(make_app):  # type: ignore[arg-type]
            pass
    assert str(caught.value) == (
        "open_client got make_app, not a wsroute.App: if it builds the app, call it (make_app())"
    )
    with pytest.raises(TypeError, match=r"^open_app got make_app, not a wsroute\.App"):
        async with open_app(make_app):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match=r"^open_client got 'app:app', not a wsroute\.App$"):
        async with open_client("app:app"):  # type: ignore[arg-type]
            pass


async def test_lifespan_runs_once_for_clients_that_share_it(autojump_clock):
    app = make_app()
    runs: list[str] = []

    @app.lifespan
    async def lifespan():
        runs.append("start")
        yield
        runs.append("stop")

    async with open_app(app):
        async with open_client(app) as a:
            await a.request("list_items")
        async with open_client(app) as b:
            await b.request("list_items")
        assert runs == ["start"]
    assert runs == ["start", "stop"]


async def test_two_instances_share_one_memory_broker(autojump_clock):
    broker = MemoryBroker()
    first, second = make_app(broker), make_app(broker)
    async with open_client(first) as alice, open_client(second) as bob:
        await alice.request("create_item", {"name": "shared"})
        assert (await bob.expect_event("create_item")).data == {"id": 1, "name": "shared"}
        # Each instance keeps its own state; only the broadcast crossed over.
        assert await bob.request("list_items") == []


async def test_an_assertion_in_the_body_is_not_wrapped(autojump_clock):
    app = make_app()
    with pytest.raises(KeyError):
        async with open_client(app):
            raise KeyError("plain")
