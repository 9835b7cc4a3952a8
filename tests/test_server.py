"""The runtime over real sockets on 127.0.0.1, driven by the `websockets` library."""

from __future__ import annotations

import gc
import json
import socket
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from wsroute import App, Connection, Disconnect, HandlerError
from wsroute.brokers import MemoryBroker

from .wsclient import WSClient, connect


@attrs.frozen
class Item:
    id: int
    name: str


@attrs.frozen
class Room:
    room: str


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


async def test_push_event_has_no_topic(serve):
    port = await serve(items_app())
    async with connect(port) as client:
        await client.send({"type": "push", "id": 1})
        assert await client.recv() == {"type": "pushed", "data": {"n": 1}}
        assert await client.recv() == {"type": "push", "id": 1, "ok": True, "data": None}


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


async def test_int_keys_round_trip(serve):
    # JSON keys are strings both ways: a dict[int, X] payload reads "2" as 2, and a
    # reply's int keys are written as strings.
    app = App()

    @app.direct("double")
    async def double(scores: dict[int, int]) -> dict[int, int]:
        assert all(type(key) is int for key in scores)
        return {key * 2: value * 2 for key, value in scores.items()}

    port = await serve(app)
    async with connect(port) as client:
        reply = await client.request("double", {"2": 5, "-3": 1})
        assert reply == {"type": "double", "id": 1, "ok": True, "data": {"4": 10, "-6": 2}}
        reply = await client.request("double", {"two": 5}, id=2)
        assert reply["error"]["details"] == [
            {"path": "$['two']", "message": 'expected an integer key, got "two"'}
        ]


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


# -- routing ---------------------------------------------------------------------


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


async def test_topic_callable_reaches_only_that_room(serve):
    app = App()

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    @app.direct("join")
    async def join(room: Room, conn: Connection) -> list[str]:
        await conn.unsubscribe("all")
        await conn.subscribe(f"room:{room.room}")
        return sorted(t for t in conn.topics if not t.startswith("conn:"))

    @app.broadcast("say", topic=lambda msg, conn: f"room:{msg['room']}")
    async def say(msg: dict[str, str]) -> str:
        return msg["text"]

    port = await serve(app)
    async with connect(port) as a, connect(port) as b, connect(port) as c:
        assert (await a.request("join", {"room": "x"}))["data"] == ["room:x"]
        assert (await b.request("join", {"room": "x"}))["data"] == ["room:x"]
        assert (await c.request("join", {"room": "y"}))["data"] == ["room:y"]
        await a.send({"type": "say", "data": {"room": "x", "text": "hi"}})
        expected = {"type": "say", "topic": "room:x", "data": "hi"}
        assert await a.recv() == expected
        assert await b.recv() == expected
        await assert_nothing_pending(c)


async def test_unsubscribed_connection_misses_broadcasts(serve):
    app = items_app()

    @app.direct("quiet")
    async def quiet(conn: Connection) -> list[str]:
        await conn.unsubscribe("all")
        return sorted(conn.topics - {f"conn:{conn.id}"})

    port = await serve(app)
    async with connect(port) as alice, connect(port) as bob:
        assert (await bob.request("quiet"))["data"] == []
        await alice.send({"type": "create", "data": {"id": 1, "name": "a"}})
        await alice.recv()
        await assert_nothing_pending(bob)


# -- concurrency and flow control -----------------------------------------------------


async def test_a_connection_that_asked_once_keeps_no_worker(serve):
    # Most connections ask once (a join), then listen: their worker ends with the
    # request. From the second request on, one worker waits for the next.
    app = items_app()
    port = await serve(app)
    async with connect(port) as client:
        [conn] = app.connections
        nursery = conn._nursery
        assert (await client.request("ping"))["data"] == "pong"
        await trio.testing.wait_all_tasks_blocked()  # the worker's end, after the reply
        assert nursery.child_tasks == set()
        assert (await client.request("ping", id=2))["data"] == "pong"
        assert (await client.request("ping", id=3))["data"] == "pong"
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 1  # the waiting worker
        assert (await client.request("ping", id=4))["data"] == "pong"


async def test_replies_in_request_order_by_default(serve):
    app = App()

    @app.direct("work")
    async def work(delay: float) -> float:
        await trio.sleep(delay)
        return delay

    port = await serve(app)
    async with connect(port) as client:
        for i, delay in enumerate([0.05, 0.0, 0.02]):
            await client.send({"type": "work", "id": i, "data": delay})
        assert [(await client.recv())["id"] for _ in range(3)] == [0, 1, 2]


async def test_max_concurrency_runs_handlers_together(serve):
    app = App(max_concurrency=2)
    first_running = trio.Event()

    @app.direct("first")
    async def first() -> str:
        first_running.set()
        await second_done.wait()
        return "first"

    second_done = trio.Event()

    @app.direct("second")
    async def second() -> str:
        await first_running.wait()
        second_done.set()
        return "second"

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "first", "id": 1})
        await client.send({"type": "second", "id": 2})
        assert [(await client.recv())["data"] for _ in range(2)] == ["second", "first"]


async def test_full_request_queue_answers_overloaded(serve):
    app = App(max_queued_requests=1)
    started = trio.Event()
    release = trio.Event()

    @app.direct("block")
    async def block(n: int) -> int:
        started.set()
        await release.wait()
        return n

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "block", "id": 1, "data": 1})
        with trio.fail_after(5):
            await started.wait()
        await client.send({"type": "block", "id": 2, "data": 2})  # queued
        await client.send({"type": "block", "id": 3, "data": 3})  # no room
        overloaded = await client.recv()
        assert overloaded["id"] == 3 and overloaded["error"]["code"] == "overloaded"
        release.set()
        assert [(await client.recv())["data"] for _ in range(2)] == [1, 2]


async def test_slow_consumer_is_closed_while_others_keep_receiving(serve):
    app = App(outbox_size=8, close_timeout=5)
    ended: list[Disconnect] = []
    slow_gone = trio.Event()

    @app.on_disconnect
    async def record(conn: Connection, reason: Disconnect) -> None:
        ended.append(reason)
        if reason.code == 1008:
            slow_gone.set()

    @app.broadcast("blob")
    async def blob(n: int) -> dict[str, Any]:
        return {"n": n, "pad": "x" * 65536}

    port = await serve(app)
    count = 300
    # The slow client buffers at most one message and then stops reading the socket;
    # the fast one reads everything as it arrives, whenever the test gets to it.
    async with connect(port, max_queue=1) as slow, connect(port, max_queue=None) as fast:
        for n in range(count):
            await fast.send({"type": "blob", "data": n})
        received = [(await fast.recv(timeout=10))["data"]["n"] for _ in range(count)]
        assert received == list(range(count))
        code, reason = await slow.wait_closed(timeout=10)
        assert (code, reason) == (1008, "slow consumer")
        with trio.fail_after(5):
            await slow_gone.wait()
        assert [r for r in ended if r.code == 1008] == [Disconnect(1008, "slow consumer", "server")]
        # The fast client is unaffected.
        await fast.send({"type": "blob", "id": "last", "data": -1})
        frames = await recv_all(fast, 2)
        assert {f.get("id") for f in frames} == {None, "last"}


# -- endings: on_disconnect exactly once --------------------------------------------


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


async def test_client_close(serve):
    app = items_app()
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client:
        await client.close(4000, "bye")
    assert await rec.wait_ended() == [Disconnect(4000, "bye", "client")]
    assert len(rec.connected) == 1


async def test_client_close_cancels_running_handlers_and_is_answered(serve):
    app = items_app()
    rec = Recorder(app)
    started, cancelled = trio.Event(), trio.Event()

    @app.direct("hang")
    async def hang() -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "hang", "id": 1})
        with trio.fail_after(5):
            await started.wait()
        await client.close(4000, "bye")
        assert client.close_code == 4000  # the server answered our close frame
    with trio.fail_after(5):
        await cancelled.wait()
    assert await rec.wait_ended() == [Disconnect(4000, "bye", "client")]


async def test_client_vanishes_without_close(serve):
    app = items_app()
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client:
        await assert_nothing_pending(client)
        client.conn.socket.shutdown(socket.SHUT_RDWR)
        assert await rec.wait_ended() == [Disconnect(1006, "", "client")]


@pytest.mark.parametrize("on_disconnect", [False, True], ids=["plain", "on_disconnect"])
async def test_an_ended_connection_is_freed_without_the_garbage_collector(serve, on_disconnect):
    """A connection's objects hold each other's callbacks while it runs; once it has
    ended, reference counting alone must free them (the cyclic collector stays off
    here), however it ended: the client closed, the server closed, the client
    vanished. A cycle left anywhere keeps them all."""
    from wsroute._server.session import Session
    from wsroute._server.transport import Transport as WebSocket

    app = items_app()
    ended = 0

    @app.direct("kick")
    async def kick(conn: Connection) -> str:
        await conn.close(4001, "kicked")
        return "done"

    if on_disconnect:

        @app.on_disconnect
        async def count(conn: Connection, disconnect: Disconnect) -> None:
            nonlocal ended
            ended += 1

    def alive() -> list[object]:
        kinds = (Session, WebSocket, Connection)
        return [o for o in gc.get_objects() if type(o) in kinds]  # no isinstance: proxies

    port = await serve(app)
    gc.collect()
    gc.disable()
    try:
        async with connect(port) as client:
            assert (await client.request("ping"))["data"] == "pong"
            await client.close(1000, "")
        async with connect(port) as client:
            await client.send({"type": "kick", "id": 1})
            assert await client.wait_closed() == (4001, "kicked")
        async with connect(port) as client:
            await assert_nothing_pending(client)
            client.conn.socket.shutdown(socket.SHUT_RDWR)
        with trio.fail_after(5):
            while app.connections:
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert alive() == []
        assert ended == (3 if on_disconnect else 0)
    finally:
        gc.enable()


async def test_handler_closes_after_its_reply(serve):
    app = items_app()
    rec = Recorder(app)

    @app.direct("kick")
    async def kick(conn: Connection) -> str:
        await conn.send("bye", None)
        await conn.close(4001, "kicked")
        return "done"

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "kick", "id": 1})
        assert await client.recv() == {"type": "bye", "data": None}
        assert await client.recv() == {"type": "kick", "id": 1, "ok": True, "data": "done"}
        assert await client.wait_closed() == (4001, "kicked")
    assert await rec.wait_ended() == [Disconnect(4001, "kicked", "server")]


async def test_close_rejects_codes_that_cannot_be_sent(serve):
    app = items_app()

    @app.direct("close")
    async def close(code: int, conn: Connection) -> None:
        await conn.close(code)

    port = await serve(app)
    async with connect(port) as client:
        for code in (999, 1005, 1006, 1015, 2000, 5000):
            reply = await client.request("close", code)
            assert reply["error"]["code"] == "internal_error"
        await assert_nothing_pending(client)


async def test_failing_on_connect_closes_with_1011_and_still_disconnects(serve, caplog):
    app = items_app()

    @app.on_connect
    async def boom(conn: Connection) -> None:
        raise RuntimeError("on_connect failed")

    rec = Recorder(app)  # registered after boom: must not run its on_connect
    port = await serve(app)
    async with connect(port) as client:
        assert await client.wait_closed() == (1011, "internal error")
    assert await rec.wait_ended() == [Disconnect(1011, "internal error", "server")]
    assert rec.connected == []
    assert any("on_connect" in r.getMessage() for r in caplog.records)


async def test_binary_frame_closes_with_1003(serve):
    app = items_app()
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client:
        await client.send(b"\x00\x01")
        assert await client.wait_closed() == (1003, "binary frames are not supported")
    assert await rec.wait_ended() == [Disconnect(1003, "binary frames are not supported", "server")]


async def test_oversized_message_closes_with_1009(serve):
    app = items_app(max_message_size=1000)
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client, connect(port) as other:
        await client.send({"type": "ping", "data": "x" * 2000})
        code, _ = await client.wait_closed()
        assert code == 1009
        await assert_nothing_pending(other)
    reasons = await rec.wait_ended(2)
    assert [r.code for r in reasons].count(1009) == 1


async def test_shutdown_lets_handlers_finish_then_closes_with_1001(serve):
    app = items_app()
    rec = Recorder(app)
    started, release = trio.Event(), trio.Event()

    @app.direct("slow")
    async def slow() -> str:
        started.set()
        await release.wait()
        return "finished"

    port = await serve(app)
    async with connect(port) as busy, connect(port) as idle:
        await busy.send({"type": "slow", "id": 1})
        with trio.fail_after(5):
            await started.wait()
        app.shutdown()
        assert await idle.wait_closed() == (1001, "server shutting down")
        release.set()
        assert await busy.recv() == {"type": "slow", "id": 1, "ok": True, "data": "finished"}
        assert await busy.wait_closed() == (1001, "server shutting down")
    reasons = await rec.wait_ended(2)
    assert reasons == [Disconnect(1001, "server shutting down", "server")] * 2
    with trio.fail_after(5):
        while app.running:
            await trio.sleep(0.01)


async def test_shutdown_refuses_new_connections(serve):
    app = items_app()
    port = await serve(app)
    app.shutdown()
    with trio.fail_after(5):
        while app.running:
            await trio.sleep(0.01)
    with pytest.raises(OSError):
        async with connect(port):
            pass


# -- app and connection tasks -------------------------------------------------------


async def test_lifespan_background_task_publishes(serve):
    app = App()
    tick = trio.Event()
    log: list[str] = []

    async def ticker() -> None:
        try:
            await tick.wait()
            await app.publish("all", "tick", {"n": 1})
            await trio.sleep_forever()
        finally:
            log.append("ticker stopped")

    @app.lifespan
    async def lifespan():
        log.append("start")
        app.start_soon(ticker)
        yield
        log.append("stop")

    port = await serve(app)
    async with connect(port) as client:
        await trio.sleep(0)
        tick.set()
        assert await client.recv() == {"type": "tick", "topic": "all", "data": {"n": 1}}
    app.shutdown()
    with trio.fail_after(5):
        while app.running:
            await trio.sleep(0.01)
    assert log == ["start", "ticker stopped", "stop"]


async def test_connection_task_is_cancelled_with_its_connection(serve):
    app = items_app()
    rec = Recorder(app)
    cancelled = trio.Event()

    async def watcher() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    @app.on_connect
    async def start(conn: Connection) -> None:
        conn.start_soon(watcher)

    port = await serve(app)
    async with connect(port) as client:
        await assert_nothing_pending(client)
    with trio.fail_after(5):
        await cancelled.wait()
    await rec.wait_ended()


async def test_failing_connection_task_closes_only_its_connection(serve):
    app = items_app()

    async def broken() -> None:
        raise ValueError("task bug")

    @app.direct("spawn")
    async def spawn(conn: Connection) -> None:
        conn.start_soon(broken)

    port = await serve(app)
    async with connect(port) as client, connect(port) as other:
        await client.send({"type": "spawn", "id": 1})
        code, _ = await client.wait_closed()
        assert code == 1011
        await assert_nothing_pending(other)


async def test_request_metadata_reaches_handlers(serve):
    app = App()

    @app.direct("whoami")
    async def whoami(conn: Connection) -> dict[str, Any]:
        return {
            "path": conn.request.path,
            "query": dict(conn.request.query),
            "header": conn.request.headers.get("X-Test"),
            "remote": conn.request.remote[0] if conn.request.remote else None,
        }

    port = await serve(app)
    async with connect(port, "/ws?room=1&room=2", additional_headers={"X-Test": "yes"}) as c:
        assert (await c.request("whoami"))["data"] == {
            "path": "/ws",
            "query": {"room": "1"},
            "header": "yes",
            "remote": "127.0.0.1",
        }


async def test_cancelled_server_still_closes_and_disconnects(nursery):
    app = items_app()
    rec = Recorder(app)
    scope = trio.CancelScope()

    async def serve_until_cancelled(*, task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await app.serve("127.0.0.1", 0, task_status=task_status)

    port = await nursery.start(serve_until_cancelled)
    async with connect(port) as client:
        await assert_nothing_pending(client)
        scope.cancel()
        assert await client.wait_closed() == (1001, "server shutting down")
    assert await rec.wait_ended() == [Disconnect(1001, "server shutting down", "server")]


async def test_shutdown_requested_during_start_up_is_not_lost(nursery):
    class SlowBroker(MemoryBroker):
        def connect(self, **options):  # type: ignore[override]
            manager = super().connect(**options)

            class Slow:
                async def __aenter__(self) -> Any:
                    await trio.sleep(0.05)
                    return await manager.__aenter__()

                async def __aexit__(self, *exc: object) -> None:
                    await manager.__aexit__(*exc)

            return Slow()

    app = items_app(broker=SlowBroker())
    done = trio.Event()

    async def serve_then_signal() -> None:
        await app.serve("127.0.0.1", 0)
        done.set()

    nursery.start_soon(serve_then_signal)
    await trio.sleep(0.01)
    assert not app.running
    app.shutdown()  # as a SIGTERM during start-up would
    with trio.fail_after(5):
        await done.wait()
