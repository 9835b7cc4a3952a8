"""permessage-deflate end to end, on real sockets: what clients negotiate, what goes
compressed on the wire, broadcasts to a mix of clients, and decompression bombs
against a real ``wsroute run --compression deflate`` process whose peak memory is
read from /proc.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import orjson
import pytest
import trio
from wsproto.events import BytesMessage, TextMessage

from wsroute import App, Connection, Deflate
from wsroute.testing import open_client

from .cliproc import StartServer, start, write
from .rawws import BINARY, CONTINUATION, TEXT, frame, open_raw
from .wsclient import connect

__all__ = ["start"]  # fixture, imported to be found

LONG = {"text": "all work and no play makes a dull JSON message " * 40}


def echo_app(**options: object) -> App:
    app = App(ping_interval=None, **options)  # type: ignore[arg-type]

    @app.direct("echo")
    async def echo(data: dict[str, str]) -> dict[str, str]:
        return data

    @app.direct("compression")
    async def compression(conn: Connection) -> str | None:
        return conn.compression

    @app.broadcast("shout")
    async def shout(data: dict[str, str]) -> dict[str, str]:
        return data

    return app


async def test_off_by_default(nursery: trio.Nursery) -> None:
    app = echo_app()
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    async with connect(port, compression="deflate") as client:
        assert client.conn.response.headers.get("Sec-WebSocket-Extensions") is None
        assert (await client.request("compression"))["data"] is None
    app.shutdown()


async def test_a_websockets_client_negotiates_it(nursery: trio.Nursery) -> None:
    app = echo_app(compression="deflate")
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    async with connect(port, compression="deflate") as client:
        assert client.conn.response.headers["Sec-WebSocket-Extensions"] == agreed
        assert (await client.request("compression"))["data"] == agreed
        for _ in range(3):  # the client compresses what it sends; we too
            assert (await client.request("echo", LONG))["data"] == LONG
    async with connect(port) as plain:  # a client that offers nothing
        assert (await plain.request("compression"))["data"] is None
        assert (await plain.request("echo", LONG))["data"] == LONG
    app.shutdown()


async def test_the_threshold_and_the_bytes_on_the_wire(nursery: trio.Nursery) -> None:
    """A long reply arrives compressed, a short one as is (both read by wsproto)."""
    app = echo_app(compression=Deflate(threshold=200))
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    async with open_raw(port, deflate=True) as ws:
        assert ws.extensions == ["permessage-deflate"]
        await ws.send_json({"type": "echo", "id": 1, "data": LONG})
        before = ws.received
        assert (await ws.recv_json())["data"] == LONG
        assert ws.received - before < 300 < len(str(LONG))
        short = {"text": "x" * 50}
        await ws.send_json({"type": "echo", "id": 2, "data": short})
        before = ws.received
        reply = await ws.recv_json()
        assert reply["data"] == short
        assert ws.received - before == 2 + len(orjson.dumps(reply))  # header + JSON
    app.shutdown()


async def test_a_compressed_message_from_a_raw_client(nursery: trio.Nursery) -> None:
    app = echo_app(compression="deflate")
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    message = b'{"type":"echo","id":7,"data":{"text":"' + b"squeeze " * 500 + b'"}}'
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    async with open_raw(port, deflate=True) as ws:
        # Fragmented: RSV1 on the first frame only.
        await ws.send_frame(TEXT, payload[:20], fin=False, rsv=0b100)
        await ws.send_frame(CONTINUATION, payload[20:-4])
        reply = await ws.recv_json()
        assert reply["id"] == 7
        assert reply["data"]["text"] == "squeeze " * 500
    app.shutdown()


@pytest.mark.parametrize(
    ("frames", "code", "reason"),
    [
        ([(TEXT, b"\xff\xfe\xfd\xfc", True, 0b100)], 1007, "invalid compressed data"),
        (
            [(BINARY, zlib.compress(b"x", wbits=-15) + b"!", True, 0b100)],
            1007,
            "invalid compressed",
        ),
        ([(TEXT, b"\x02\x00", False, 0b100), (CONTINUATION, b"", True, 0b100)], 1002, "reserved"),
        ([(0x9, b"", True, 0b100)], 1002, "reserved bits set"),  # a ping with RSV1
        ([(TEXT, b"\x02\x00", True, 0b010)], 1002, "reserved bits set"),  # RSV2
    ],
    ids=["not deflate", "after the final block", "RSV1 on a continuation", "ping", "RSV2"],
)
async def test_broken_compressed_frames(
    nursery: trio.Nursery, frames: list[tuple[int, bytes, bool, int]], code: int, reason: str
) -> None:
    app = echo_app(compression="deflate")
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    async with (
        connect(port, compression="deflate") as bystander,
        open_raw(port, deflate=True) as ws,
    ):
        for opcode, payload, fin, rsv in frames:
            await ws.send_frame(opcode, payload, fin=fin, rsv=rsv)
        closed = await ws.closed()
        assert closed.code == code
        assert reason in closed.reason
        await ws.dropped()
        assert (await bystander.request("echo", LONG))["data"] == LONG
    app.shutdown()


async def test_a_broadcast_reaches_compressed_and_plain_clients(nursery: trio.Nursery) -> None:
    app = echo_app(compression=Deflate(threshold=0))
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    async with (
        connect(port, compression="deflate") as one,
        connect(port, compression="deflate") as two,
        connect(port) as plain,
        open_raw(port, deflate=True) as raw,
    ):
        for client in (one, two, plain):
            await client.request("compression")  # connected and subscribed
        await one.send({"type": "shout", "id": 1, "data": LONG})
        for client in (one, two, plain):
            while (event := await client.recv()).get("type") != "shout" or "ok" in event:
                pass
            assert event == {"type": "shout", "topic": "all", "data": LONG}
        while True:
            event = await raw.event()
            if isinstance(event, TextMessage) and '"ok"' not in event.data:
                break
        assert LONG["text"] in event.data
    app.shutdown()


async def test_the_test_kit_offers_it() -> None:
    app = echo_app(compression=Deflate(threshold=0, server_context_takeover=True))
    async with open_client(app, compression="deflate") as client:
        assert client.compression == "permessage-deflate; client_no_context_takeover"
        for _ in range(3):
            assert await client.request("echo", LONG) == LONG
    async with open_client(app) as client:
        assert client.compression is None
        assert await client.request("echo", LONG) == LONG


# -- decompression bombs --------------------------------------------------------------

BOMB_APP = """
from wsroute import App

app = App(ping_interval=None)


@app.direct("echo")
async def echo(data: str) -> str:
    return data
"""
MiB = 2**20


def bomb(size: int) -> bytes:
    """``size`` zero bytes, deflated (about 1000 to 1): a small frame, a huge message."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(bytes(size)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
@pytest.mark.parametrize("fragmented", [False, True], ids=["one frame", "fragmented"])
async def test_a_bomb_closes_1009_without_inflating_it(
    start: StartServer, tmp_path: Path, fragmented: bool
) -> None:
    """A frame of about 100 KiB inflating to 100 times max_message_size (1 MiB): 1009,
    and the server's peak memory does not move by anything like 100 MiB; a client
    connected meanwhile keeps being served."""
    write(tmp_path, {"bombapp.py": BOMB_APP})
    server = await start(
        "run", "bombapp:app", "--port", "0", "--compression", "deflate", cwd=tmp_path
    )
    port = await server.wait_listening()
    payload = bomb(100 * MiB)
    assert len(payload) < 120_000
    async with connect(port, compression="deflate") as bystander:
        assert (await bystander.request("echo", "x" * 5000))["data"] == "x" * 5000
        before = peak_rss(server.process.pid)
        for _ in range(3):
            async with open_raw(port, deflate=True) as ws:
                if fragmented:
                    # All fragments in one write, as the single frame below: written one
                    # by one, a fragment sent after the server closed with 1009 failed
                    # (broken pipe), about one run in ten.
                    frames = [frame(BINARY, payload[:1000], fin=False, rsv=0b100)]
                    for start_at in range(1000, len(payload), 10_000):
                        chunk = payload[start_at : start_at + 10_000]
                        end = start_at + 10_000 >= len(payload)
                        frames.append(frame(CONTINUATION, chunk, fin=end))
                    await ws.send(b"".join(frames))
                else:
                    await ws.send_frame(TEXT, payload, rsv=0b100)
                closed = await ws.closed()
                assert closed.code == 1009, closed
                assert not [e for e in closed.frames if isinstance(e, BytesMessage)]
        grown = peak_rss(server.process.pid) - before
        assert grown < 8 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"
        assert (await bystander.request("echo", "still here"))["data"] == "still here"
