"""Where an idle wsroute connection's memory goes: a tracemalloc breakdown.

    .venv/bin/python benchmarks/idle_breakdown.py [--connections 2000] [--top 25]

Serves the benchmark app in this process on 127.0.0.1, opens that many idle
connections from raw sockets (a handshake, nothing more), and prints the Python
memory they hold per connection, grouped by the source line that allocated it. RSS
in the real ``idle`` scenario is higher: allocator slack and the interpreter's
free lists are not Python objects. Use this to see what to trim, ``run.py`` to
measure.
"""

from __future__ import annotations

import argparse
import base64
import gc
import logging
import os
import sys
import tracemalloc
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent / "servers"))

from wsroute_app import app

_ECHO = b'{"type": "echo", "id": 1, "data": {"seq": 0, "t": 0.0}}'


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + body


async def _open_idle(port: int, count: int, echo: bool = False) -> list[trio.SocketStream]:
    streams = []
    for _ in range(count):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some(4096)
        assert answer.startswith(b"HTTP/1.1 101"), answer[:80]
        if echo:  # as run.py's idle scenario does: one request, answered
            await stream.send_all(_masked_text(_ECHO))
            while b'"ok":true' not in answer:
                answer += await stream.receive_some(4096)
        streams.append(stream)
    return streams


def _short(frame: tracemalloc.Frame) -> str:
    return f"{'/'.join(Path(frame.filename).parts[-2:])}:{frame.lineno}"


def _where(trace: tracemalloc.Traceback) -> str:
    """The allocating line, and the innermost wsroute line that led to it."""
    innermost = _short(trace[-1])
    for frame in reversed(trace):  # most recent call first
        if "/wsroute/" in frame.filename:
            ours = _short(frame)
            return innermost if ours == innermost else f"{innermost} <- {ours}"
    return innermost


async def main(count: int, top: int, echo: bool) -> None:
    logging.getLogger("wsroute").setLevel(logging.WARNING)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(app.serve, "127.0.0.1", 0)
        warm = await _open_idle(port, 50, echo)  # first-use caches, interned strings
        await trio.sleep(0.2)
        gc.collect()
        tracemalloc.start(25)
        before = tracemalloc.take_snapshot()
        streams = await _open_idle(port, count, echo)
        await trio.sleep(0.5)  # let every session settle into its idle wait
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grouped: dict[str, int] = {}
        total = 0
        for stat in after.compare_to(before, "traceback"):
            if stat.size_diff <= 0:
                continue
            where = _where(stat.traceback)
            grouped[where] = grouped.get(where, 0) + stat.size_diff
            total += stat.size_diff
        what = "idle connections after one request" if echo else "idle connections"
        print(f"{count} {what}: {total / count / 1024:.2f} KiB of Python objects each")
        for where, size in sorted(grouped.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {size / count:8.0f} B  {where}")
        for stream in streams + warm:
            await stream.aclose()
        app.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--echo", action="store_true", help="one request per connection first (as run.py's idle)"
    )
    args = parser.parse_args()
    trio.run(main, args.connections, args.top, args.echo)
