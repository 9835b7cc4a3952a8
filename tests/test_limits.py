"""Per-connection limits and timeouts, on in-memory streams under the mock clock, and
the windows of upgrade requests per address (``_server/limits.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from wsroute import App, Connection, Disconnect
from wsroute._server.limits import AddressWindows
from wsroute.testing import (
    CloseInfo,
    ErrorReply,
    HandshakeRejected,
    Reply,
    open_app,
    open_client,
)


class RawPeer:
    """A WebSocket client driven by hand: it answers no ping and reads only when told."""

    def __init__(self, stream: trio.abc.Stream, served: trio.Event) -> None:
        self.stream = stream
        self.served = served  # set when the server's handling of the stream has ended
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def handshake(self, target: str = "/") -> None:
        await self.stream.send_all(self.ws.send(Request(host="test", target=target)))
        while True:
            self.ws.receive_data(await self.stream.receive_some(65536))
            if any(isinstance(event, AcceptConnection) for event in self.ws.events()):
                return

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def read_events(self) -> list[Any]:
        """Everything the server sent so far, until it closes or goes quiet."""
        events: list[Any] = []
        while True:
            with trio.move_on_after(1):
                data = await self.stream.receive_some(65536)
                if not data:
                    return events
                self.ws.receive_data(data)
                events.extend(self.ws.events())
                continue
            return events


@asynccontextmanager
async def raw_peer(app: App, *, lockstep: bool = False) -> AsyncIterator[RawPeer]:
    pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
    client, server = pair()
    served = trio.Event()
    async with open_app(app), trio.open_nursery() as nursery:
        runtime = app._runtime
        assert runtime is not None

        async def serve() -> None:
            await runtime.handle_stream(server, remote=("127.0.0.1", 1))
            served.set()

        nursery.start_soon(serve)
        yield RawPeer(client, served)
        nursery.cancel_scope.cancel()


def recorded(app: App) -> list[Disconnect]:
    ended: list[Disconnect] = []

    @app.on_disconnect
    async def record(conn: Connection, reason: Disconnect) -> None:
        ended.append(reason)

    return ended


def ping_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    return app


# -- handshake deadline -----------------------------------------------------------------


async def test_silent_handshake_is_cut_at_handshake_timeout(autojump_clock, caplog):
    app = ping_app(handshake_timeout=10)
    with caplog.at_level("INFO", logger="wsroute"):
        async with raw_peer(app) as peer:
            with trio.fail_after(11):
                await peer.served.wait()
            assert trio.current_time() >= 10
    assert "handshake timed out after 10.0 s" in caplog.messages


async def test_an_accept_hook_is_cut_at_the_handshake_timeout(autojump_clock, caplog):
    app = ping_app(handshake_timeout=10)
    cancelled = trio.Event()

    @app.accept
    async def slow(request: Any) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with caplog.at_level("INFO", logger="wsroute"):
        async with raw_peer(app) as peer:
            await peer.stream.send_all(
                WSConnection(ConnectionType.CLIENT).send(Request(host="test", target="/"))
            )
            with trio.fail_after(11):
                await peer.served.wait()
    assert cancelled.is_set()
    assert "handshake timed out after 10.0 s" in caplog.messages


async def test_the_handshake_deadline_ends_with_the_handshake(autojump_clock, caplog):
    # The deadline is the connection nursery's while the handshake lasts: an open
    # connection must outlive it by far.
    app = ping_app(handshake_timeout=10)
    with caplog.at_level("INFO", logger="wsroute"):
        async with open_client(app) as client:
            await trio.sleep(60)
            assert await client.request("ping") == "pong"
            assert client.closed is None
    assert not any("timed out" in message for message in caplog.messages)


async def test_trickled_handshake_is_cut_at_the_same_total_deadline(autojump_clock):
    app = ping_app(handshake_timeout=10)
    request = WSConnection(ConnectionType.CLIENT).send(Request(host="test", target="/"))
    assert len(request) > 11  # at a byte a second, it cannot finish in time

    async def trickle(stream: trio.abc.Stream) -> None:
        try:
            for byte in request:
                await stream.send_all(bytes([byte]))
                await trio.sleep(1)
        except trio.BrokenResourceError:
            pass  # the server hung up

    async with raw_peer(app) as peer, trio.open_nursery() as nursery:
        nursery.start_soon(trickle, peer.stream)
        with trio.fail_after(10.5):
            await peer.served.wait()


# -- heartbeat ---------------------------------------------------------------------------


async def test_unresponsive_client_is_closed_with_1011_by_the_heartbeat(autojump_clock):
    # The close frame goes out, and the connection ends, at the ping timeout: the
    # server does not wait close_timeout for an answer from a peer it judged dead.
    app = ping_app(ping_interval=5, ping_timeout=5, close_timeout=30)
    ended = recorded(app)
    async with raw_peer(app) as peer:
        await peer.handshake()
        start = trio.current_time()
        with trio.fail_after(5 + 5 + 0.5):
            await peer.served.wait()
        assert trio.current_time() - start == 10
        events = await peer.read_events()
    assert ended == [Disconnect(1011, "ping timeout", "server")]
    closes = [event for event in events if isinstance(event, CloseConnection)]
    assert [(close.code, close.reason) for close in closes] == [(1011, "ping timeout")]


async def test_responsive_client_stays_connected(autojump_clock):
    app = ping_app(ping_interval=5, ping_timeout=5)
    async with open_client(app) as client:
        await trio.sleep(300)
        assert await client.request("ping") == "pong"
        assert client.closed is None


async def test_heartbeat_can_be_disabled(autojump_clock):
    app = ping_app(ping_interval=None)
    ended = recorded(app)
    async with raw_peer(app) as peer:
        await peer.handshake()
        await trio.sleep(3600)
        assert not peer.served.is_set()
    assert ended == [Disconnect(1001, "server shutting down", "server")]


# -- message size ------------------------------------------------------------------------


async def test_oversized_message_closes_with_1009(autojump_clock):
    app = ping_app(max_message_size=100)
    ended = recorded(app)
    async with open_client(app) as client:
        await client.send("ping", "x" * 200)
        closed = await client.wait_closed()
        assert closed.code == 1009
    assert [d.code for d in ended] == [1009]


async def test_oversized_message_frees_the_socket_even_if_the_peer_never_answers(
    autojump_clock,
):
    app = ping_app(max_message_size=100, close_timeout=5)
    async with raw_peer(app) as peer:
        await peer.handshake()
        await peer.send_text("x" * 500)
        # The peer reads nothing and never answers the close: the server drops it.
        with trio.fail_after(5):
            await peer.served.wait()


# -- rate limit and invalid-message budget --------------------------------------------------


async def test_rate_limit_answers_rate_limited_then_closes_abusers(autojump_clock):
    app = ping_app(rate_limit=(5, 1.0))
    async with open_client(app) as client:
        for i in range(10):
            await client.send("ping", id=i)
        frames = [await client.receive() for _ in range(10)]
        assert frames[:5] == [Reply("ping", i, "pong") for i in range(5)]
        assert [f.code for f in frames[5:] if isinstance(f, ErrorReply)] == ["rate_limited"] * 5
        assert [f.id for f in frames[5:]] == list(range(5, 10))
        await client.send("ping", id=10)
        assert await client.wait_closed() == CloseInfo(1008, "rate limit exceeded")


async def test_rate_limit_window_refills(autojump_clock):
    app = ping_app(rate_limit=(3, 1.0))
    async with open_client(app) as client:
        for _ in range(4):
            for _ in range(3):
                assert await client.request("ping") == "pong"
            await trio.sleep(1)


@pytest.mark.parametrize(
    "bad_frame",
    ["not json", '{"type": 1}', '{"type": "nope"}', '{"type": "ping", "data": 1}'],
)
async def test_invalid_frames_spend_the_budget(bad_frame, autojump_clock):
    app = ping_app(invalid_message_limit=(3, 60.0))
    ended = recorded(app)
    async with open_client(app) as client:
        for _ in range(4):
            await client.send_raw(bad_frame)
        assert await client.wait_closed() == CloseInfo(1008, "too many invalid messages")
        # Every invalid frame was still answered before the close.
        replies = [await client.receive() for _ in range(4)]
        assert all(isinstance(r, ErrorReply) for r in replies)
    assert ended == [Disconnect(1008, "too many invalid messages", "server")]


async def test_invalid_budget_refills_and_handler_errors_do_not_count(autojump_clock):
    app = ping_app(invalid_message_limit=(2, 10.0))

    @app.direct("fail")
    async def fail() -> None:
        from wsroute import HandlerError

        raise HandlerError("nope", "app-level errors are not the client's fault")

    async with open_client(app) as client:
        for _ in range(3):
            await client.send_raw("{bad")
            await client.send_raw("{bad")
            for _ in range(5):
                await client.send("fail")
            await trio.sleep(10)
        assert await client.request("ping") == "pong"
        assert client.closed is None


# -- handler timeout ---------------------------------------------------------------------------


async def test_handler_timeout_and_per_route_override(autojump_clock):
    app = App(handler_timeout=1, ping_interval=0.5, ping_timeout=0.5)

    @app.direct("slow")
    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return "done"

    @app.direct("patient", timeout=10)
    async def patient(seconds: float) -> str:
        await trio.sleep(seconds)
        return "done"

    async with open_client(app) as client:
        await client.send("slow", 5, id=1)
        reply = await client.expect_reply(1)
        assert isinstance(reply, ErrorReply) and reply.code == "timeout"
        assert trio.current_time() == pytest.approx(1, abs=0.01)
        # Pings kept being answered while the handler ran: the connection is alive.
        assert await client.request("patient", 5, timeout=20) == "done"
        assert await client.request("slow", 0.5) == "done"


# -- frame handler -------------------------------------------------------------------------------


async def test_frame_handler_echoes_text_and_binary(autojump_clock):
    app = App()
    seen: list[Any] = []

    @app.frame_handler
    async def echo(frame: str | bytes, conn: Connection) -> str | bytes:
        seen.append((type(frame), conn.id is not None))
        return frame

    async with open_client(app) as client:
        await client.send_raw("plain text, not JSON")
        assert await client.receive_raw() == "plain text, not JSON"
        await client.send_raw(b"\x00\x01\xff")
        assert await client.receive_raw() == b"\x00\x01\xff"
    assert seen == [(str, True), (bytes, True)]


async def test_frame_handler_failure_closes_with_1011(autojump_clock, caplog):
    app = App()

    @app.frame_handler
    async def broken(frame: str | bytes) -> None:
        raise ValueError("bug")

    async with open_client(app) as client:
        await client.send_raw("x")
        assert await client.wait_closed() == CloseInfo(1011, "internal error")
    assert any("frame handler failed" in r.getMessage() for r in caplog.records)


def test_frame_handler_and_routes_are_exclusive():
    from wsroute import RegistrationError

    app = ping_app()
    with pytest.raises(RegistrationError, match="either one frame handler"):

        @app.frame_handler
        async def echo(frame: str) -> str:
            return frame

    other = App()

    @other.frame_handler
    async def echo2(frame: str) -> str:
        return frame

    with pytest.raises(RegistrationError, match="has a frame handler"):

        @other.direct("ping")
        async def ping() -> str:
            return "pong"


# -- slow-consumer policies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("drop_oldest", [0, 7, 8, 9]), ("drop_newest", [0, 1, 2, 3])],
)
async def test_drop_policies_keep_the_connection(policy, expected, autojump_clock):
    app = App(outbox_size=3, slow_consumer=policy, ping_interval=None)
    async with raw_peer(app, lockstep=True) as peer:
        await peer.handshake()
        await trio.testing.wait_all_tasks_blocked()
        for n in range(10):
            await app.publish("all", "n", n)
        await trio.testing.wait_all_tasks_blocked()
        events = await peer.read_events()
        texts = [e.data for e in events if isinstance(e, TextMessage)]
        import json

        assert [json.loads(t)["data"] for t in texts] == expected
        assert not any(isinstance(e, CloseConnection) for e in events)
        assert app.connections and app.connections[0]._outbox.dropped == 6


async def test_close_policy_closes_with_1008(autojump_clock):
    app = App(outbox_size=3, ping_interval=None, close_timeout=5)
    ended = recorded(app)
    async with raw_peer(app, lockstep=True) as peer:
        await peer.handshake()
        await trio.testing.wait_all_tasks_blocked()
        for n in range(10):
            await app.publish("all", "n", n)
        events = await peer.read_events()
        closes = [e for e in events if isinstance(e, CloseConnection)]
        assert [(c.code, c.reason) for c in closes] == [(1008, "slow consumer")]
    assert ended == [Disconnect(1008, "slow consumer", "server")]


async def test_frame_handler_apps_are_closed_instead_of_getting_json_errors(autojump_clock):
    rate_limited = App(rate_limit=(3, 1.0))
    blocked = App(max_queued_requests=1)
    release = trio.Event()

    @rate_limited.frame_handler
    async def echo(frame: str | bytes) -> str | bytes:
        return frame

    @blocked.frame_handler
    async def stuck(frame: str | bytes) -> None:
        await release.wait()

    async with open_client(rate_limited) as client:
        for n in range(4):
            await client.send_raw(f"frame {n}")
        assert [await client.receive_raw() for _ in range(3)] == ["frame 0", "frame 1", "frame 2"]
        assert await client.wait_closed() == CloseInfo(1008, "rate limit exceeded")
    async with open_client(blocked) as client:
        for n in range(3):  # one running, one queued, one with no room
            await client.send_raw(f"frame {n}")
        # The close is graceful: the stuck handler gets close_timeout (10 s) first.
        assert await client.wait_closed(timeout=30) == CloseInfo(1013, "overloaded")
        release.set()


# -- upgrade requests per address (connect_rate_limit) --------------------------------


def test_address_windows_count_per_address_and_say_how_long_to_wait() -> None:
    windows = AddressWindows(2, 10.0)
    assert windows.hit("a", 100.0) is None
    assert windows.hit("a", 101.0) is None
    assert windows.hit("a", 104.0) == 6.0  # the window began at 100
    assert windows.hit("a", 109.5) == 0.5
    assert windows.hit("b", 109.5) is None  # an address of its own
    assert windows.hit("a", 110.0) is None  # a new window
    assert windows.hit("a", 110.0) is None
    assert windows.hit("a", 110.0) == 10.0


def test_address_windows_drop_the_windows_of_quiet_addresses() -> None:
    windows = AddressWindows(1, 10.0)
    for i in range(1000):
        windows.hit(f"10.0.{i // 256}.{i % 256}", float(i) / 100)  # all within 10 s
    assert len(windows) == 1000
    windows.hit("192.0.2.1", 15.0)  # the windows begun at 5.0 or before have ended
    assert len(windows) == 1000 - 501 + 1
    windows.hit("192.0.2.1", 100.0)
    assert len(windows) == 1


def test_address_windows_past_the_cap_forget_the_oldest() -> None:
    windows = AddressWindows(1, 60.0, max_addresses=3)
    for name in ("a", "b", "c"):
        assert windows.hit(name, 0.0) is None
    assert windows.hit("a", 1.0) is not None
    assert windows.hit("d", 1.0) is None  # no room: "a", the oldest, is forgotten
    assert len(windows) == 3
    assert windows.hit("a", 2.0) is None  # so it starts afresh (and "b" goes)
    assert windows.hit("c", 2.0) is not None  # the others are still counted
    assert windows.hit("d", 2.0) is not None


async def test_connect_rate_limit_refuses_with_429_and_retry_after(autojump_clock):
    app = App(connect_rate_limit=(2, 10.0))
    me = ("198.51.100.1", 1)
    async with open_app(app):
        for _ in range(2):
            async with open_client(app, remote=me):
                pass
        await trio.sleep(4)
        with pytest.raises(HandshakeRejected) as refused:
            async with open_client(app, remote=me):
                pass
        assert refused.value.status == 429
        assert refused.value.body == b"too many connection attempts from this address"
        assert refused.value.headers["retry-after"] == "6"
        async with open_client(app, remote=("198.51.100.2", 1)):
            pass  # another address is not limited
        await trio.sleep(6)  # the window has ended
        async with open_client(app, remote=me):
            pass
