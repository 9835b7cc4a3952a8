"""The ``Connection`` handlers and hooks receive (``wsroute._server.connection``):
``send``, ``send_frame``, ``close``, ``start_soon``, ``state``, ``topics``, ``closing``.

Behaviour in a served app is checked over real sockets and on the in-memory client
under the autojump clock; argument checks and checkpoints on a connection built on its
own, with a real hub over a memory broker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed as TrioWSConnectionClosed
from trio_websocket import open_websocket_url

from wsroute import App, Connection, ConnectionClosed, Disconnect, SlowConsumerPolicy
from wsroute._request import Request
from wsroute._server.hub import Hub
from wsroute.brokers import MemoryBroker
from wsroute.testing import CloseInfo, open_client

from .servers import Recorder, assert_nothing_pending, items_app
from .wsclient import connect

# -- in a served app, over real sockets ---------------------------------------------


async def test_push_event_has_no_topic(serve):
    port = await serve(items_app())
    async with connect(port) as client:
        await client.send({"type": "push", "id": 1})
        assert await client.recv() == {"type": "pushed", "data": {"n": 1}}
        assert await client.recv() == {"type": "push", "id": 1, "ok": True, "data": None}


async def test_a_coroutine_given_to_start_soon_is_refused_at_the_call(
    serve, caplog: pytest.LogCaptureFixture
):
    # `conn.start_soon(tick(conn))`, the asyncio habit, used to fail later in the task
    # and close the connection with 1011; now the handler's call raises, and only its
    # request fails.
    app = App()
    refused: list[str] = []

    async def tick(conn: Connection) -> None:
        await conn.send("tick")

    @app.direct("watch")
    async def watch(conn: Connection) -> None:
        try:
            conn.start_soon(tick(conn))  # type: ignore[arg-type]
        except TypeError as exc:
            refused.append(str(exc))
            raise

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "watch", "id": 1})
        assert await client.recv() == {
            "type": "watch",
            "id": 1,
            "ok": False,
            "error": {"code": "internal_error", "message": "internal server error"},
        }
        await client.send({"type": "ping", "id": 2})  # the connection goes on
        assert await client.recv() == {"type": "ping", "id": 2, "ok": True, "data": "pong"}
    assert refused == [
        "conn.start_soon takes an async function and its arguments: write"
        " conn.start_soon(tick, ...), not conn.start_soon(tick(...))"
    ]
    assert refused[0] in caplog.text  # the log of the failed handler names the fix


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


async def test_too_many_invalid_messages_is_logged_once(serve, caplog: pytest.LogCaptureFixture):
    # Invalid frames queued behind a busy handler are answered after it, each one
    # counted against the spent budget: each used to log the close once more.
    app = App(invalid_message_limit=(2, 60.0))
    release = trio.Event()

    @app.direct("hold")
    async def hold() -> None:
        await release.wait()

    port = await serve(app)
    caplog.set_level(logging.INFO, logger="wsroute")
    with trio.fail_after(5):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send_message('{"type": "hold", "id": 0}')
            for i in range(1, 11):
                await ws.send_message(json.dumps({"type": "nope", "id": i}))
            await trio.testing.wait_all_tasks_blocked()  # all read and queued
            release.set()
            with pytest.raises(TrioWSConnectionClosed) as closed:
                for _ in range(100):
                    await ws.get_message()
    assert closed.value.reason.code == 1008
    closing = [r for r in caplog.records if r.getMessage().endswith("invalid messages, closing")]
    assert len(closing) == 1


# -- a connection on its own --------------------------------------------------------


@pytest.fixture
async def conn() -> AsyncIterator[Connection]:
    """A connection outside any session, on a real hub over a memory broker."""
    async with MemoryBroker().connect() as session:
        yield Connection(
            Request.build("/"),
            hub=Hub(session),
            unstructure=lambda value: value,
            outbox_size=8,
            policy=SlowConsumerPolicy.CLOSE,
        )


@pytest.mark.parametrize("frame", [1, None, bytearray(b"x"), memoryview(b"x"), ["text"]])
async def test_send_frame_takes_only_str_or_bytes(conn: Connection, frame: Any) -> None:
    with pytest.raises(TypeError, match=f"a frame is str or bytes, not {type(frame).__name__}$"):
        await conn.send_frame(frame)
    assert not conn._outbox._frames


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
async def test_close_refuses_codes_that_cannot_be_sent(conn: Connection, code: int) -> None:
    message = (
        f"close code {code} cannot be sent: use 1000-1003, 1007-1014, or an application code"
        " in 3000-4999"
    )
    with pytest.raises(ValueError, match=f"^{message}$"):
        await conn.close(code)
    assert not conn.closing  # a refused close changes nothing


async def test_close_reason_is_at_most_123_bytes_of_utf8(conn: Connection) -> None:
    with pytest.raises(ValueError, match=r"^close reason must be at most 123 bytes of UTF-8$"):
        await conn.close(1000, "é" * 62)  # 62 characters, 124 bytes
    assert not conn.closing
    await conn.close(1000, "é" * 61 + "x")  # 123 bytes
    assert conn.closing


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
async def test_close_takes_every_sendable_code_and_the_first_close_wins(
    conn: Connection, code: int
) -> None:
    await conn.close(code, "first")
    await conn.close(4000, "second")
    assert conn._disconnect == Disconnect(code, "first", "server")


async def test_send_send_frame_and_close_are_checkpoints(conn: Connection) -> None:
    with trio.testing.assert_checkpoints():
        await conn.send("event", {"n": 1})
    with trio.testing.assert_checkpoints():
        await conn.send_frame("raw")
    with trio.testing.assert_checkpoints():
        await conn.send_frame(b"raw")
    with trio.testing.assert_checkpoints():
        await conn.close(4000)


async def test_state_is_created_on_first_use_and_may_be_replaced(conn: Connection) -> None:
    assert conn._state is None
    conn.state.room = "lobby"
    assert conn.state == SimpleNamespace(room="lobby")
    conn.state = SimpleNamespace(room="kitchen", seat=2)
    assert (conn.state.room, conn.state.seat) == ("kitchen", 2)


async def test_topics_is_a_snapshot(conn: Connection) -> None:
    await conn.subscribe("room")
    topics = conn.topics
    assert topics == frozenset({"room"}) and isinstance(topics, frozenset)
    await conn.subscribe("other")
    await conn.unsubscribe("room")
    assert topics == frozenset({"room"})
    assert conn.topics == frozenset({"other"})


# -- in a served app, on the in-memory client ------------------------------------------


def api_app() -> App:
    app = App(ping_interval=None)

    @app.direct("raw")
    async def raw(conn: Connection) -> str:
        await conn.send_frame("plain text")
        await conn.send_frame(b"\x00\xff")
        return "sent"

    @app.direct("remember")
    async def remember(room: str, conn: Connection) -> None:
        conn.state.room = room

    @app.direct("recall")
    async def recall(conn: Connection) -> str | None:
        return getattr(conn.state, "room", None)

    @app.direct("join")
    async def join(room: str, conn: Connection) -> list[str]:
        await conn.subscribe(room)
        return sorted(conn.topics - {f"conn:{conn.id}"})

    @app.direct("leave")
    async def leave(room: str, conn: Connection) -> list[str]:
        await conn.unsubscribe(room)
        return sorted(conn.topics - {f"conn:{conn.id}"})

    @app.direct("own_topic")
    async def own_topic(conn: Connection) -> bool:
        return f"conn:{conn.id}" in conn.topics

    @app.direct("quit")
    async def quit(conn: Connection) -> list[bool]:
        before = conn.closing
        await conn.close(4000, "quit")
        return [before, conn.closing]

    return app


async def test_send_frame_bypasses_the_json_protocol(autojump_clock: Any) -> None:
    async with open_client(api_app()) as client:
        await client.send("raw", id=1)
        assert await client.receive_raw() == "plain text"
        assert await client.receive_raw() == b"\x00\xff"
        assert await client.receive_raw() == '{"type":"raw","id":1,"ok":true,"data":"sent"}'


async def test_state_lasts_for_the_connection_and_is_its_own(autojump_clock: Any) -> None:
    app = api_app()
    async with open_client(app) as alice, open_client(app) as bob:
        await alice.request("remember", "lobby")
        assert await alice.request("recall") == "lobby"
        assert await bob.request("recall") is None


async def test_topics_follow_subscribe_and_unsubscribe(autojump_clock: Any) -> None:
    async with open_client(api_app()) as client:
        assert await client.request("own_topic") is True
        assert await client.request("join", "room") == ["all", "room"]
        assert await client.request("leave", "all") == ["room"]
        assert await client.request("leave", "never-joined") == ["room"]


async def test_closing_turns_true_with_close(autojump_clock: Any) -> None:
    async with open_client(api_app()) as client:
        assert await client.request("quit") == [False, True]
        assert await client.wait_closed() == CloseInfo(4000, "quit")


async def test_an_ended_connection_refuses_sends_subscriptions_and_tasks(
    autojump_clock: Any,
) -> None:
    app = App(ping_interval=None)
    kept: list[Connection] = []
    ended = trio.Event()

    @app.on_connect
    async def keep(conn: Connection) -> None:
        kept.append(conn)

    @app.on_disconnect
    async def gone(conn: Connection) -> None:
        ended.set()

    async def task() -> None: ...

    async with open_client(app) as client:
        await client.close(1000)
    await ended.wait()
    [conn] = kept
    assert conn.closing
    with pytest.raises(ConnectionClosed):
        await conn.send("late")
    with pytest.raises(ConnectionClosed):
        await conn.send_frame("late")
    with pytest.raises(ConnectionClosed):
        await conn.subscribe("late")
    with pytest.raises(ConnectionClosed):
        conn.start_soon(task)


async def test_a_failing_task_is_logged_and_closes_with_1011(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(ping_interval=None)
    rec = Recorder(app)
    got: list[Any] = []

    async def broken(first: int, second: str) -> None:
        got.append((first, second))
        await trio.sleep(1)
        raise ValueError("task bug")

    @app.on_connect
    async def start(conn: Connection) -> None:
        conn.start_soon(broken, 1, "two")

    async with open_client(app) as client:
        assert await client.wait_closed() == CloseInfo(1011, "internal error")
    assert await rec.wait_ended() == [Disconnect(1011, "internal error", "server")]
    assert got == [(1, "two")]
    [failure] = [r for r in caplog.records if r.exc_info]
    assert failure.levelno == logging.ERROR and "task" in failure.getMessage()
    assert failure.exc_info is not None and str(failure.exc_info[1]) == "task bug"


async def test_recovery_fills_half_the_outbox_and_a_closed_one_never_makes_it_wait():
    async with MemoryBroker().connect() as session:
        conn = Connection(
            Request.build("/"),
            hub=Hub(session),
            unstructure=lambda value: value,
            outbox_size=8,
            policy=SlowConsumerPolicy.CLOSE,
        )
        assert conn._fits(20)  # all at once into an empty outbox
        for _ in range(3):
            conn._push("queued")
        assert conn._fits(1) and not conn._fits(2)  # then within half of it
        conn._outbox.close()
        # Waiting for room there would return at once, again and again: it takes
        # (and drops) them instead.
        assert conn._fits(2)
        with trio.fail_after(1):
            await conn._wait_room(2)
