"""The Python client (``wsroute.client``) against real servers on 127.0.0.1: served
in-process for most cases, a real ``wsroute run`` process where the server must be
killed and restarted. Every wait is bounded."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from wsroute import App, Connection, Disconnect
from wsroute._msgpack import JSON_SUBPROTOCOL, SUBPROTOCOL
from wsroute.client import (
    Backoff,
    ClientClosed,
    ClientError,
    ClientHandlerError,
    ConnectError,
    Disconnected,
    Event,
    EventsLost,
    InvalidReply,
    Replayed,
    RequestTimeout,
    State,
    StateChange,
    connect,
)

from .client_app import Said, Say, make_app
from .cliproc import Server, StartServer, child_env, free_port, start

__all__ = ["start"]  # fixture, imported to be found

TESTS = Path(__file__).resolve().parent
TIMEOUT = 10.0
FAST = Backoff(initial=0.01, maximum=0.05)

Serve = Callable[[App], Awaitable[int]]


@pytest.fixture
async def url(serve: Serve) -> str:
    port = await serve(make_app())
    return f"ws://127.0.0.1:{port}/"


def alice(url: str, **options: Any) -> Any:
    options.setdefault("reconnect", FAST)
    return connect(url, token="alice-token", **options)


async def next_state(changes: AsyncIterator[StateChange]) -> StateChange:
    with trio.fail_after(TIMEOUT):
        return await changes.__anext__()


async def until_state(changes: AsyncIterator[StateChange], state: State) -> list[StateChange]:
    """The changes up to the first to ``state``, that one included."""
    seen = [await next_state(changes)]
    while seen[-1].state is not state:
        seen.append(await next_state(changes))
    return seen


def brief(change: StateChange) -> tuple[State, int | None, str]:
    return change.state, change.code, change.reason


# -- requests ---------------------------------------------------------------------------


async def test_a_request_returns_its_replys_data(url: str) -> None:
    async with alice(url) as client:
        assert client.state is State.OPEN
        assert await client.request("echo", {"a": [1, 2]}) == {"a": [1, 2]}
        assert await client.request("echo") is None
        said = await client.request("say", Say("r", "hi"), reply_type=Said)
        assert said == Said("r", "hi", "alice")  # attrs in, attrs out


async def test_an_error_reply_raises_with_its_code_message_and_details(url: str) -> None:
    async with alice(url) as client:
        with pytest.raises(ClientHandlerError) as info:
            await client.request("fail")
        error = info.value
        assert (error.type, error.code, error.message, error.details) == (
            "fail",
            "not_found",
            "nothing here",
            {"id": 7},
        )
        assert str(error) == "fail: not_found: nothing here; details: {'id': 7}"
        with pytest.raises(ClientHandlerError) as info:
            await client.request("say", {"room": 1})
        assert info.value.code == "invalid_data"
        # Uncaught, the message is what a traceback shows: it says which field and why.
        assert str(info.value) == (
            f"say: invalid_data: {info.value.message}; details: [{{'path': '$.room', 'message':"
            " 'expected a string, got number'}, {'path': '$.text', 'message': 'required field"
            " missing'}]"
        )
        assert await client.request("echo", 1) == 1  # the connection goes on


async def test_a_reply_of_the_wrong_type_is_invalid(url: str) -> None:
    async with alice(url) as client:
        with pytest.raises(InvalidReply) as info:
            await client.request("echo", {"room": "r"}, reply_type=Said)
        assert {"path": "$.text", "message": "required field missing"} in info.value.details


async def test_a_slow_reply_times_out_and_its_late_reply_is_dropped_quietly(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with alice(url) as client:
        with pytest.raises(RequestTimeout, match=r"no reply to 'slow' within 0\.1 s"):
            await client.request("slow", 0.3, timeout=0.1)
        assert isinstance(RequestTimeout("x"), TimeoutError)
        await trio.sleep(0.4)  # the late reply arrives meanwhile
        assert await client.request("echo", "after") == "after"
    assert "no pending request" not in caplog.text


async def test_concurrent_requests_are_matched_by_id(url: str) -> None:
    async with alice(url) as client:
        results: dict[int, Any] = {}

        async def ask(n: int) -> None:
            results[n] = await client.request("echo", n)

        async with trio.open_nursery() as nursery:
            for n in range(200):
                nursery.start_soon(ask, n)
        assert results == {n: n for n in range(200)}


async def test_emit_sends_without_an_id(url: str) -> None:
    async with alice(url) as a, connect(url, token="bob-token") as b:
        await a.request("join", "r")
        await b.request("join", "r")
        events = a.events("say")
        await b.emit("say", {"room": "r", "text": "no ack"})
        with trio.fail_after(TIMEOUT):
            event = await events.__anext__()
        assert event == Event("say", "room:r", {"room": "r", "text": "no ack", "by": "bob"})


# -- events -----------------------------------------------------------------------------


async def test_events_are_filtered_by_type_and_topic_and_decoded(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with alice(url) as client:
        for room in ("a", "b"):
            await client.request("join", room)
        in_b = client.events("say", topic="room:b", data_type=Said)
        everything = client.events()
        for room in ("a", "b"):
            await client.request("say", Say(room, room))
        with trio.fail_after(TIMEOUT):
            assert await in_b.__anext__() == Event("say", "room:b", Said("b", "b", "alice"))
            topics = [(await everything.__anext__()).topic for _ in range(2)]
        assert topics == ["room:a", "room:b"]
        mismatched = client.events("say", data_type=int)
        await client.request("say", Say("a", "x"))
        await client.request("echo", None)  # the event came before this reply
        assert "event 'say' skipped: its data does not match" in caplog.text
        mismatched.close()


async def test_a_full_event_stream_reports_the_loss(url: str) -> None:
    async with alice(url) as client:
        await client.request("join", "r")
        strict = client.events("say", buffer=2)
        lenient = client.events("say", buffer=2, overflow="drop_oldest")
        for n in range(4):
            await client.request("say", Say("r", str(n)))
        await client.request("echo", None)
        with trio.fail_after(TIMEOUT):
            assert [(await strict.__anext__()).data["text"] for _ in range(2)] == ["0", "1"]
            with pytest.raises(EventsLost):
                await strict.__anext__()
            assert [(await lenient.__anext__()).data["text"] for _ in range(2)] == ["2", "3"]
        assert lenient.dropped == 2


async def test_event_streams_end_when_the_client_closes(url: str) -> None:
    async with alice(url) as client:
        events = client.events()
        await client.aclose()
        with trio.fail_after(TIMEOUT):
            assert [event async for event in events] == []


async def test_bad_frames_from_the_server_are_logged_and_dropped(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wsroute.client"):
        async with alice(url) as client:
            assert await client.request("junk") == "sent"
            assert await client.request("echo", "still fine") == "still fine"
    assert "dropped a frame that is not JSON" in caplog.text
    assert "dropped a binary frame of 7 bytes" in caplog.text
    assert "dropped a reply to no pending request" in caplog.text
    assert "dropped a frame that is not a message" in caplog.text


# -- connecting and authentication ------------------------------------------------------


async def test_a_refused_token_fails_at_once_without_a_reconnect_loop(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsroute")
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectError) as info:
        async with connect(url, token="wrong", reconnect=FAST):
            pass
    assert info.value.status == 401
    assert info.value.body == b"invalid token"
    assert caplog.text.count("refused from") == 1  # one attempt, no loop


async def test_a_token_function_is_called_for_every_connection(url: str) -> None:
    calls: list[int] = []

    async def fresh_token() -> str:
        calls.append(1)
        return "alice-token"

    async with connect(url, token=fresh_token, reconnect=FAST) as client:
        changes = client.state_changes()
        await client.request("kick", {"code": 1012, "reason": "restart"})
        assert (await next_state(changes)).state is State.RECONNECTING
        assert (await next_state(changes)).state is State.OPEN
    assert len(calls) == 2


async def test_an_unreachable_server_gives_up_after_max_attempts() -> None:
    url = f"ws://127.0.0.1:{free_port()}/"
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectError, match="could not connect"):
        async with connect(url, reconnect=Backoff(initial=0.01, max_attempts=3)):
            pass


# -- closes and reconnects --------------------------------------------------------------


@pytest.mark.parametrize("code", [4001, 1008, 1000, 3000])
async def test_a_close_that_means_go_away_ends_the_client(url: str, code: int) -> None:
    async with alice(url) as client:
        changes = client.state_changes()
        await client.request("kick", {"code": code, "reason": "bye"})  # answered, then closed
        assert brief(await next_state(changes)) == (State.CLOSED, code, "bye")
        with pytest.raises(ClientClosed) as info:
            await client.request("echo", 1)
        assert (info.value.code, info.value.reason) == (code, "bye")


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013])
async def test_a_close_worth_retrying_reconnects_and_replays_joins_in_order(
    url: str, code: int
) -> None:
    async with alice(url) as client, connect(url, token="bob-token") as bob:
        changes = client.state_changes()
        await client.request("join", "first", replay=True)
        await client.request("join", "second", replay=True)
        await client.request("join", "first", replay=True)  # recorded once
        await client.request("join", "unrecorded")
        assert client.replayed == [Replayed("join", "first"), Replayed("join", "second")]
        await client.request("kick", {"code": code, "reason": "again"})  # answered, then closed
        reconnecting = await next_state(changes)
        assert brief(reconnecting) == (State.RECONNECTING, code, "again")
        assert reconnecting.attempt == 1 and 0 <= (reconnecting.delay or 0) <= FAST.initial
        assert await next_state(changes) == StateChange(State.OPEN)
        joins = await client.request("joins")
        assert joins[-2:] == ["first", "second"] and joins.count("unrecorded") == 1
        events = client.events("say")
        await bob.request("say", Say("second", "welcome back"))
        with trio.fail_after(TIMEOUT):
            assert (await events.__anext__()).data["text"] == "welcome back"


async def test_forgotten_replays_are_not_made_again(url: str) -> None:
    async with alice(url) as client:
        await client.request("join", "a", replay=True)
        await client.request("join", "b", replay=True)
        client.forget_replay("join", "a")
        assert client.replayed == [Replayed("join", "b")]
        client.forget_replay("join")
        assert client.replayed == []


async def test_a_replay_that_fails_is_reported_once_and_dropped(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[tuple[ClientError, Replayed]] = []
    async with alice(url, on_replay_error=lambda e, r: failures.append((e, r))) as client:
        changes = client.state_changes()
        await client.request("join", "doomed", replay=True)
        await client.request("join", "fine", replay=True)
        monkeypatch.setenv("WSROUTE_TEST_DENY", "doomed")
        await client.request("kick", {"code": 1012})  # answered, then closed
        assert (await next_state(changes)).state is State.RECONNECTING
        assert (await next_state(changes)).state is State.OPEN
        [(error, replayed)] = failures
        assert isinstance(error, ClientHandlerError) and error.code == "forbidden"
        assert replayed == Replayed("join", "doomed")
        assert client.replayed == [Replayed("join", "fine")]


async def test_requests_wait_while_the_client_reconnects(url: str) -> None:
    async with alice(url, reconnect=Backoff(initial=0.2, maximum=0.2)) as client:
        changes = client.state_changes()
        await client.request("kick", {"code": 1012})  # answered, then closed
        assert (await next_state(changes)).state is State.RECONNECTING
        assert await client.request("echo", "queued") == "queued"
        assert client.state is State.OPEN


async def test_closing_fails_pending_requests_and_stops_reconnecting(url: str) -> None:
    async with alice(url) as client:
        changes = client.state_changes()
        errors: list[BaseException] = []

        async def pending() -> None:
            try:
                await client.request("slow", 5)
            except ClientClosed as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending)
            await trio.sleep(0.05)
            await client.aclose()
        assert [type(e) for e in errors] == [ClientClosed]
        assert await next_state(changes) == StateChange(State.CLOSED, 1000, "")
        with pytest.raises(ClientClosed):
            await client.emit("echo")
        with pytest.raises(ValueError, match="1000 or 3000-4999"):
            await client.aclose(1001)
        with pytest.raises(ValueError, match="123 bytes"):
            await client.aclose(4000, "é" * 62)


async def test_a_cancelled_client_closes_with_the_handshake_not_its_timeout(
    serve: Serve,
) -> None:
    # A close_timeout far beyond the bound below: a client whose reader died with the
    # cancellation would wait it out, for want of the server's close frame.
    app = make_app()
    ended: list[Disconnect] = []

    @app.on_disconnect
    async def record(conn: Connection, why: Disconnect) -> None:
        ended.append(why)

    url = f"ws://127.0.0.1:{await serve(app)}/"
    for _ in range(5):  # the reader and the body are cancelled in either order
        with trio.fail_after(TIMEOUT):
            with trio.move_on_after(0.05):
                async with alice(url, close_timeout=60) as client:
                    await client.request("echo", 1)
                    await trio.sleep_forever()
    with trio.fail_after(TIMEOUT):
        while len(ended) < 5:
            await trio.sleep(0.01)
    assert [(why.code, why.initiator) for why in ended] == [(1000, "client")] * 5


# -- msgpack ----------------------------------------------------------------------------


@attrs.frozen
class Blob:
    name: str
    content: bytes


def with_format_routes(app: App) -> App:
    """``app`` with routes that show the format: what was offered and selected, and
    bytes both ways (``store`` answers the content reversed and keeps the blob)."""
    stored: list[Blob] = []

    @app.direct("format")
    async def format(conn: Connection) -> list[Any]:
        return [conn.request.headers.get("sec-websocket-protocol"), conn.subprotocol]

    @app.direct("store")
    async def store(blob: Blob) -> Blob:
        stored.append(blob)
        return Blob(blob.name, blob.content[::-1])

    @app.direct("stored")
    async def stored_so_far() -> list[Blob]:
        return stored

    @app.broadcast("share", topic=lambda blob, conn: f"room:{blob.name}")
    async def share(blob: Blob) -> Blob:
        return blob

    return app


@pytest.fixture
async def blob_url(serve: Serve) -> str:
    port = await serve(with_format_routes(make_app()))
    return f"ws://127.0.0.1:{port}/"


async def test_msgpack_requests_go_in_binary_frames_with_bytes_as_binary(blob_url: str) -> None:
    async with alice(blob_url, msgpack=True) as client:
        assert client.subprotocol == SUBPROTOCOL
        # The server speaks msgpack only in binary frames (a text frame closes 1003).
        assert await client.request("format") == [SUBPROTOCOL, SUBPROTOCOL]
        assert await client.request("echo", {"a": [1, 2.5, None, True]}) == {
            "a": [1, 2.5, None, True]
        }
        assert await client.request("say", Say("r", "hi"), reply_type=Said) == Said(
            "r", "hi", "alice"
        )
        # Binary both ways: bytes come back as bytes, not as base64 text.
        assert await client.request("echo", b"\x00\xff") == b"\x00\xff"
        reply = await client.request("store", Blob("b", b"\x00\x01"))
        assert reply == {"name": "b", "content": b"\x01\x00"}
        typed = await client.request("store", Blob("b", b"\x02\x03"), reply_type=Blob)
        assert typed == Blob("b", b"\x03\x02")
        # What JSON would write differently is written as JSON writes it.
        assert await client.request("echo", {1: float("nan")}) == {"1": None}


async def test_json_clients_send_and_receive_bytes_as_base64(blob_url: str) -> None:
    async with alice(blob_url) as client:
        assert client.subprotocol is None
        assert await client.request("format") == [None, None]
        assert await client.request("echo", b"\x00\xff") == "AP8="
        reply = await client.request("store", Blob("b", b"\x00\x01"))
        assert reply == {"name": "b", "content": "AQA="}
        typed = await client.request("store", Blob("b", b"\x02\x03"), reply_type=Blob)
        assert typed == Blob("b", b"\x03\x02")
        assert await client.request("store", {"name": "b", "content": "BAU="}, reply_type=Blob) == (
            Blob("b", b"\x05\x04")
        )


async def test_msgpack_error_replies_are_those_of_json(blob_url: str) -> None:
    errors: dict[bool, list[tuple[str, str, str, Any]]] = {}
    for binary in (False, True):
        async with alice(blob_url, msgpack=binary) as client:
            seen = errors[binary] = []
            for type, data in (
                ("say", {"room": 1}),
                ("store", {"name": "b", "content": 1}),
                ("fail", None),
                ("nope", None),
            ):
                with pytest.raises(ClientHandlerError) as info:
                    await client.request(type, data)
                error = info.value
                seen.append((error.type, error.code, error.message, error.details))
            assert await client.request("echo", 1) == 1  # the connection goes on
    assert errors[True] == errors[False]
    assert [code for _, code, _, _ in errors[True]] == [
        "invalid_data",
        "invalid_data",
        "not_found",
        "unknown_type",
    ]


async def test_events_reach_msgpack_and_json_clients_each_in_its_format(blob_url: str) -> None:
    async with alice(blob_url, msgpack=True) as a, connect(blob_url, token="bob-token") as b:
        for client in (a, b):
            await client.request("join", "r")
        raw = [a.events("share"), b.events("share")]
        typed = [a.events("share", data_type=Blob), b.events("share", data_type=Blob)]
        await a.request("share", Blob("r", b"\x00\xff"))
        with trio.fail_after(TIMEOUT):
            assert [(await events.__anext__()).data["content"] for events in raw] == [
                b"\x00\xff",
                "AP8=",
            ]
            for events in typed:
                assert await events.__anext__() == Event("share", "room:r", Blob("r", b"\x00\xff"))
        said = a.events("say")
        await b.emit("say", {"room": "r", "text": "from json"})
        with trio.fail_after(TIMEOUT):
            assert (await said.__anext__()).data == {"room": "r", "text": "from json", "by": "bob"}


@pytest.mark.parametrize(
    ("subprotocols", "selected"), [([], None), ([JSON_SUBPROTOCOL], JSON_SUBPROTOCOL)]
)
async def test_msgpack_falls_back_to_json_when_the_server_does_not_select_it(
    serve: Serve, subprotocols: list[str], selected: str | None
) -> None:
    port = await serve(with_format_routes(App(subprotocols=subprotocols)))
    url = f"ws://127.0.0.1:{port}/"
    async with connect(url, msgpack=True, subprotocols=[JSON_SUBPROTOCOL, SUBPROTOCOL]) as client:
        assert client.subprotocol == selected
        # Offered first, and once.
        offered = f"{SUBPROTOCOL}, {JSON_SUBPROTOCOL}"
        assert await client.request("format") == [offered, selected]
        typed = await client.request("store", Blob("b", b"\x00\x01"), reply_type=Blob)
        assert typed == Blob("b", b"\x01\x00")
        untyped = await client.request("store", Blob("b", b"\x00\xff"))
        assert untyped == {"name": "b", "content": "/wA="}  # base64 text


async def test_msgpack_replays_after_a_reconnect(blob_url: str) -> None:
    async with alice(blob_url, msgpack=True) as client, connect(blob_url, token="bob-token") as bob:
        changes = client.state_changes()
        await client.request("join", "r", replay=True)
        await client.request("store", Blob("b", b"\x00\xff"), replay=True)
        await client.request("store", Blob("b", b"\x00\xff"), replay=True)  # recorded once
        await client.request("echo", "AP8=", replay=True)  # not the same as the bytes
        assert client.replayed == [
            Replayed("join", "r"),
            Replayed("store", {"name": "b", "content": b"\x00\xff"}),
            Replayed("echo", "AP8="),
        ]
        await client.request("kick", {"code": 1012})  # answered, then closed
        assert (await next_state(changes)).state is State.RECONNECTING
        assert await next_state(changes) == StateChange(State.OPEN)
        assert client.subprotocol == SUBPROTOCOL
        assert await client.request("stored", reply_type=list[Blob]) == [Blob("b", b"\x00\xff")] * 3
        events = client.events("say")
        await bob.request("say", Say("r", "welcome back"))
        with trio.fail_after(TIMEOUT):
            assert (await events.__anext__()).data["text"] == "welcome back"
        client.forget_replay("store", Blob("b", b"\x00\xff"))
        assert client.replayed == [Replayed("join", "r"), Replayed("echo", "AP8=")]


async def test_frames_that_are_not_msgpack_are_logged_and_dropped(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wsroute.client"):
        async with alice(url, msgpack=True) as client:
            assert await client.request("junk") == "sent"
            assert await client.request("echo", "still fine") == "still fine"
    assert "dropped a text frame of 16 characters" in caplog.text  # "this is not JSON"
    assert "dropped a frame that is not msgpack (unpack(b) received extra data.)" in caplog.text
    assert caplog.text.count("dropped a text frame") == 3


# -- a real `wsroute run` process -------------------------------------------------------


async def run_server(start: StartServer, port: int, **env: str) -> Server:
    server = await start(
        "run",
        "client_app:app",
        "--app-dir",
        str(TESTS),
        "--port",
        str(port),
        cwd=TESTS.parent,
        env=child_env(**env),
    )
    await server.wait_listening()
    return server


async def test_server_restart_mid_session(start: StartServer) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    server = await run_server(start, port)
    async with alice(url) as client:
        changes = client.state_changes()
        assert await client.request("join", "lobby", replay=True) == "lobby"
        failures: list[BaseException] = []

        async def pending() -> None:
            try:
                await client.request("slow", 30)
            except Disconnected as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending)
            await trio.sleep(0.1)
            server.signal(signal.SIGKILL)
        assert [(type(e), e.code) for e in failures] == [(Disconnected, 1006)]
        assert (await next_state(changes)).state is State.RECONNECTING
        await run_server(start, port)
        seen = await until_state(changes, State.OPEN)
        # Reported before every wait while the server was away, attempts counted.
        attempts = [change.attempt for change in seen if change.state is State.RECONNECTING]
        assert attempts == list(range(2, len(attempts) + 2))
        # The replayed join put the client back in its room on the new server.
        async with connect(url, token="bob-token") as bob:
            events = client.events("say", topic="room:lobby")
            await bob.request("say", Say("lobby", "after the restart"))
            with trio.fail_after(TIMEOUT):
                assert (await events.__anext__()).data["by"] == "bob"
        assert await client.request("echo", "again") == "again"


async def test_a_real_server_refuses_a_bad_token_once(start: StartServer) -> None:
    port = free_port()
    server = await run_server(start, port)
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectError) as info:
        async with connect(f"ws://127.0.0.1:{port}/", token="nope"):
            pass
    assert info.value.status == 401
    await trio.sleep(0.2)  # a reconnect loop would have logged more refusals by now
    assert server.stderr.count("refused from") == 1


async def test_timeouts_big_messages_and_many_requests_on_a_real_server(
    start: StartServer,
) -> None:
    port = free_port()
    await run_server(start, port)
    async with alice(f"ws://127.0.0.1:{port}/") as client:
        with pytest.raises(RequestTimeout):
            await client.request("slow", 1, timeout=0.1)
        mib = 1024 * 1024
        assert len(await client.request("big", mib)) == mib
        text = "y" * (mib - 100)  # with its envelope, just under the server's 1 MiB
        assert await client.request("echo", text) == text
        results: list[Any] = [None] * 1000

        async def ask(n: int) -> None:
            results[n] = await client.request("echo", n)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for n in range(1000):
                    nursery.start_soon(ask, n)
        assert results == list(range(1000))


async def test_a_ping_after_the_clients_close_does_not_crash_it(nursery: trio.Nursery) -> None:
    """trio-websocket's reader dies answering a ping that comes after its own close
    frame (its issue #184): the client must still close cleanly, within close_timeout."""
    from wsroute._wire.frames import OP_PING, encode
    from wsroute._wire.handshake import RequestReader, UpgradeRequest, accept

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def server() -> None:
        stream = await listeners[0].accept()
        reader = RequestReader()
        request = None
        while request is None:
            request = reader.feed(await stream.receive_some(65536))
        assert isinstance(request, UpgradeRequest)
        await stream.send_all(accept(request))
        data = b""
        while not data.startswith(b"\x88"):  # the client's close frame
            data = await stream.receive_some(65536)
        await stream.send_all(encode(OP_PING, b"late"))
        await trio.sleep_forever()

    nursery.start_soon(server)
    with trio.fail_after(TIMEOUT):
        async with connect(
            f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=0.5
        ) as client:
            assert client.state is State.OPEN
    assert client.state is State.CLOSED
