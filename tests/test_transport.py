"""A server connection's socket I/O (``wsroute._server.transport``, ``writer``,
``fdread``): direct writes, pending bytes, pings between frames, messages handed to
the session without a task, the close handshake; on both paths, the file
descriptor's (POSIX) and the portable one through the stream's own methods (Windows,
TLS).

Real sockets where the kernel's buffers matter (a partial write only happens on one);
the in-memory client where only the order of events does.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Awaitable, Callable

import orjson
import pytest
import trio
import trio.testing
from wsproto.events import Ping, TextMessage

from wsroute import App, Connection, Disconnect
from wsroute._server import transport
from wsroute.testing import open_client

from .rawws import CLOSE, TEXT, frame, open_raw
from .wsclient import connect

Serve = Callable[[App], Awaitable[int]]


@pytest.fixture(params=["fd", "stream"])
def io_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a server reads and writes a TCP socket: os.read/os.write on its file
    descriptor (POSIX), or the stream's receive_some/send_all (chosen where the OS
    cannot read a socket's descriptor, e.g. Windows)."""
    if request.param == "stream":
        monkeypatch.setattr(transport, "_FD_IO", False)
    return str(request.param)


def burst_app(**options: object) -> App:
    app = App(**options)  # type: ignore[arg-type]

    @app.direct("burst")
    async def burst(spec: dict[str, int], conn: Connection) -> int:
        # Every send returns at once; the socket cannot take it all, so the frames
        # go out directly, then partly (pending bytes), then through the writer.
        filler = "x" * spec["size"]
        for seq in range(spec["count"]):
            await conn.send("chunk", {"seq": seq, "filler": filler})
        return spec["count"]

    return app


async def read_burst(raw, count: int, size: int) -> list[object]:  # type: ignore[no-untyped-def]
    """Read ``count`` chunk events and the reply; return the other events seen."""
    seen, others = 0, []
    while True:
        event = await raw.event()
        if isinstance(event, TextMessage):
            message = orjson.loads(event.data)
            if message["type"] == "burst":
                assert message["data"] == count
                assert seen == count  # the reply was sent after the last chunk
                return others
            assert message["data"] == {"seq": seen, "filler": "x" * size}
            seen += 1
        else:
            others.append(event)


async def test_a_burst_larger_than_the_socket_buffers_arrives_whole_and_in_order(
    serve: Serve, io_path: str
) -> None:
    port = await serve(burst_app(ping_interval=None))
    count, size = 200, 50_000  # 10 MB: far more than a 4 KiB receive window holds
    async with open_raw(port, rcvbuf=4096) as raw:
        await raw.send_json({"type": "burst", "id": 1, "data": {"count": count, "size": size}})
        assert await read_burst(raw, count, size) == []


async def test_a_ping_slips_between_frames_while_writes_are_pending(
    serve: Serve, io_path: str
) -> None:
    port = await serve(burst_app(ping_interval=0.02, ping_timeout=5))
    count, size = 100, 50_000
    async with open_raw(port, rcvbuf=4096) as raw:
        await raw.send_json({"type": "burst", "id": 1, "data": {"count": count, "size": size}})
        # Not reading: the server's socket stays full while its heartbeat pings, so
        # the ping must wait among the pending bytes and still arrive as a whole frame.
        await trio.sleep(0.1)
        others = await read_burst(raw, count, size)
    assert others and all(isinstance(event, Ping) for event in others)


async def test_messages_sent_during_on_connect_are_handled_in_order_afterwards(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = App()
    release = trio.Event()

    @app.on_connect
    async def slow_hello(conn: Connection) -> None:
        await release.wait()

    @app.direct("echo")
    async def echo(n: int) -> int:
        return n

    async with open_client(app) as client:
        for n in range(10):  # more than trio-websocket's own queue holds
            await client.send("echo", n, id=n)
        await trio.sleep(1)
        await client.expect_no_message()
        release.set()
        for n in range(10):
            reply = await client.receive()
            assert (reply.id, reply.data) == (n, n)  # type: ignore[union-attr]


async def test_a_close_from_the_client_right_after_the_handshake_is_answered(
    serve: Serve, io_path: str
) -> None:
    # The socket reader answers the client's close frame while the session may still
    # be starting; ending the session must not cut that answer (it once did, at random).
    port = await serve(App(ping_interval=None))
    for _ in range(50):
        async with open_raw(port) as raw:
            await raw.send_frame(CLOSE, (4000).to_bytes(2, "big"))
            closed = await raw.closed()
            assert closed.code == 4000  # the echo of our close frame
            await raw.dropped()


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        pytest.param(b"", 1005, "", id="no code"),
        pytest.param((1001).to_bytes(2, "big"), 1001, "", id="1001"),
        pytest.param((4000).to_bytes(2, "big") + "à bientôt".encode(), 4000, "à bientôt", id="4k"),
    ],
)
async def test_the_clients_close_is_echoed_then_the_server_hangs_up(
    serve: Serve, io_path: str, payload: bytes, code: int, reason: str
) -> None:
    # The answer is the same code and reason (none for 1005), the server closes the
    # TCP connection first, and the session hears of it as the client's close.
    app = App(ping_interval=None)
    ended: list[Disconnect] = []
    done = trio.Event()

    @app.on_disconnect
    async def record(conn: Connection, disconnect: Disconnect) -> None:
        ended.append(disconnect)
        done.set()

    port = await serve(app)
    async with open_raw(port) as raw:
        await raw.send_json({"type": "nothing", "id": 1})
        assert (await raw.recv_json())["error"]["code"] == "unknown_type"
        await raw.send_frame(CLOSE, payload)
        assert await raw.closed() == (code, reason, [])
        await raw.dropped()
    with trio.fail_after(5):
        await done.wait()
    assert ended == [Disconnect(code, reason, "client")]


async def test_a_connection_reset_by_the_peer_ends_with_1006_and_spares_the_others(
    serve: Serve, io_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The reader reads the socket itself: a reset (not an orderly EOF) must end only
    # that connection, as one that vanished (1006), and run its on_disconnect.
    app = App(ping_interval=None)
    ended: list[int] = []
    done = trio.Event()

    @app.direct("echo")
    async def echo(n: int) -> int:
        return n

    @app.on_disconnect
    async def bye(conn: Connection, reason: Disconnect) -> None:
        ended.append(reason.code)
        done.set()

    port = await serve(app)
    async with open_raw(port) as other, open_raw(port) as doomed:
        sock = doomed.stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # SO_LINGER 0: the kernel sends RST
        with trio.fail_after(5):
            await done.wait()
        await other.send_json({"type": "echo", "id": 1, "data": 7})
        assert (await other.recv_json())["data"] == 7
    assert ended[0] == 1006
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # an expected end


async def test_heartbeat_over_a_real_socket_keeps_answering_clients_and_drops_silent_ones(
    serve: Serve, io_path: str
) -> None:
    app = burst_app(ping_interval=0.05, ping_timeout=0.1)
    port = await serve(app)
    async with connect(port) as answering, open_raw(port) as silent:
        # The raw client reads but never answers pings; the `websockets` client does.
        closed = await silent.closed()
        assert (closed.code, closed.reason) == (1011, "ping timeout")
        assert closed.frames and all(isinstance(event, Ping) for event in closed.frames)
        reply = await answering.request("burst", {"count": 1, "size": 1})
        assert reply["data"] == 1
        assert answering.close_code is None


async def test_a_silent_peer_is_dropped_at_the_ping_timeout_not_after_close_timeout(
    serve: Serve, io_path: str
) -> None:
    # close_timeout is far beyond the test's own timeout: the TCP connection must end,
    # and on_disconnect run, right after the 1011, not when close_timeout runs out.
    app = burst_app(ping_interval=0.05, ping_timeout=0.1, close_timeout=60)
    ended = trio.Event()

    @app.on_disconnect
    async def bye() -> None:
        ended.set()

    port = await serve(app)
    async with open_raw(port) as silent:
        closed = await silent.closed()
        assert (closed.code, closed.reason) == (1011, "ping timeout")
        await silent.dropped()
        with trio.fail_after(5):
            await ended.wait()


async def test_the_path_is_chosen_once_per_connection(
    serve: Serve, io_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TCP socket takes the descriptor path on POSIX unless switched off; any other
    stream (the test kit's memory streams, TLS) always takes the stream's methods."""
    chosen: list[bool] = []
    original = transport.Transport.__init__

    def spy(self: transport.Transport, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        chosen.append(self._fd)

    monkeypatch.setattr(transport.Transport, "__init__", spy)
    app = App(ping_interval=None)

    @app.direct("echo")
    async def echo(n: int) -> int:
        return n

    port = await serve(app)
    async with connect(port) as client:
        assert (await client.request("echo", 1, id=1))["data"] == 1
    async with open_client(app) as client:
        assert await client.request("echo", 2) == 2
    assert chosen == [io_path == "fd", False]


async def test_a_message_split_across_many_reads_is_read_whole(serve: Serve, io_path: str) -> None:
    app = App(ping_interval=None, max_message_size=4 * 1024 * 1024)

    @app.direct("size")
    async def size(text: str) -> int:
        return len(text)

    port = await serve(app)
    text = "é" * 1_000_000  # 2 MB on the wire, in many reads
    async with open_raw(port) as raw:
        data = orjson.dumps({"type": "size", "id": 1, "data": text})
        wire = frame(TEXT, data)
        for start in range(0, len(wire), 50_000):
            await raw.send(wire[start : start + 50_000])
        assert (await raw.recv_json(timeout=20))["data"] == 1_000_000
