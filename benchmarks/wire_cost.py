"""Server instructions and bytes on the wire per request and per fan-out delivery,
JSON against msgpack, permessage-deflate off and on: counted, not timed.

    .venv/bin/python benchmarks/wire_cost.py [--items 0,24] [--requests 300]
        [--broadcasts 30] [--subscribers 10,100] [--json FILE]

Serves the benchmark app (``wsroute_app:app`` for ``--items 0``, else
``wsroute_app:items_app``) under ``valgrind --tool=callgrind``, once as it is and
once with ``--compression deflate`` (``wsroute.Deflate``'s defaults: compression
from 1 KiB, level 1, no context takeover), and drives it from raw sockets here, one
thing at a time:

- ``rpc``: one connection sends ``echo`` requests, each waiting for its reply, in
  JSON or in msgpack (``wsroute.v1.msgpack``), offering permessage-deflate on the
  server that has it. Its messages are compressed as the ``ws`` client compresses
  them: from 1 KiB, zlib's default level, no context kept.
- ``fanout``: S connections (each after one ``echo``, so subscribed to ``all``); the
  first publishes a ``blast`` (no id) and every one of them, itself included, reads
  it before the next: S deliveries per broadcast. In JSON, in msgpack, or mixed
  (every second connection msgpack, the publisher JSON). Two sizes of S split the
  cost of a broadcast into what it costs once (receive, decode, validate, encode and
  compress) and what each further recipient adds.

The counters are dumped after a warm-up and again after the measured operations: the
server's user-space instructions per operation (no kernel time, no timing). Bytes are
counted at the client's sockets in the same window: frames with their headers, TCP
payload. ``--items N`` puts N catalogue items in every message, as ``loadgen.mjs
--payload N`` does (the same list). Needs valgrind; takes a few minutes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
QUIET = ("--log-level", "warning")  # as run.py serves it: no log line per connection
MSGPACK = "wsroute.v1.msgpack"
THRESHOLD = 1024  # the ws client's (and wsroute.Deflate's) default
TAIL = b"\x00\x00\xff\xff"  # RFC 7692: what a compressed message's last block ends with
TAGS = ("red", "new", "sale", "blue", "large")
WARMUP = 20
FANOUT_WARMUP = 3
#: The fan-out mixes: which connections speak msgpack, by index.
MIXES = {
    "json": lambda i: False,
    "msgpack": lambda i: True,
    "mixed": lambda i: i % 2 == 1,
}


def items_of(n: int) -> list[dict[str, Any]]:
    """The payload's catalogue items, as ``loadgen.mjs`` builds them."""
    return [
        {
            "id": k + 1,
            "sku": f"SKU-{k + 1:06d}",
            "name": f"widget {k + 1}",
            "price": (999 + 125 * k) / 100,
            "stock": (7 * k) % 50,
            "tags": [TAGS[k % 5], TAGS[(k + 2) % 5]],
            "updated_at": f"2026-12-04T18:{k % 60:02d}:00Z",
        }
        for k in range(n)
    ]


# -- a raw client ---------------------------------------------------------------------


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def _frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One masked client frame."""
    n = len(payload)
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


@dataclass
class Client:
    """One connection: JSON text or msgpack binary, permessage-deflate or not."""

    port: int
    msgpack: bool
    deflate: bool
    sock: socket.socket = field(init=False)
    buf: bytes = b""
    sent: int = 0  # bytes written and read since the handshake
    received: int = 0
    pings: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Sec-WebSocket-Protocol: {MSGPACK}\r\n" if self.msgpack else ""
        if self.deflate:  # what ws offers
            extra += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head[:80]
        headers = head.decode().lower()
        if self.msgpack:
            assert f"sec-websocket-protocol: {MSGPACK}" in headers, "msgpack refused"
        if self.deflate:
            # wsroute.Deflate's default answer: no context takeover on either side.
            assert "permessage-deflate" in headers, "permessage-deflate refused"
            assert "client_no_context_takeover" in headers, headers
        self.sent = self.received = 0

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.received += len(chunk)
        return chunk

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def send(self, message: dict[str, Any]) -> None:
        if self.msgpack:
            opcode, payload = 0x2, msgpack.packb(message)
        else:
            opcode, payload = 0x1, json.dumps(message, separators=(",", ":")).encode()
        compressed = self.deflate and len(payload) >= THRESHOLD
        if compressed:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            payload = payload.removesuffix(TAIL)
        self._send(_frame(opcode, payload, compressed))

    def receive(self) -> dict[str, Any]:
        """The next message (pings answered, each frame whole: the server does not
        fragment)."""
        while True:
            first, payload = self._read_frame()
            opcode = first & 0x0F
            if opcode == 0x9:
                self.pings += 1
                self._send(_frame(0xA, payload))
                continue
            assert opcode == (0x2 if self.msgpack else 0x1), f"opcode {opcode}"
            if first & 0x40:
                payload = zlib.decompressobj(-15).decompress(payload + TAIL)
            result: dict[str, Any] = (msgpack.unpackb if self.msgpack else json.loads)(payload)
            return result

    def _read_frame(self) -> tuple[int, bytes]:
        while (found := _split_frame(self.buf)) is None:
            self.buf += self._recv()
        first, payload, self.buf = found
        return first, payload

    def echo(self, seq: int, items: list[dict[str, Any]] | None) -> None:
        self.send({"type": "echo", "id": seq, "data": _stamp(seq, items)})
        reply = self.receive()
        assert reply.get("ok") is True and reply["id"] == seq, str(reply)[:200]

    def close(self) -> None:
        self.sock.close()


def _stamp(seq: int, items: list[dict[str, Any]] | None) -> dict[str, Any]:
    stamp: dict[str, Any] = {"seq": seq, "t": round(time.perf_counter() * 1000, 3)}
    if items is not None:
        stamp["items"] = items
    return stamp


def _split_frame(buf: bytes) -> tuple[int, bytes, bytes] | None:
    """The first whole (unmasked) server frame of ``buf``: its first byte, its payload
    and what follows it; None while it is not whole."""
    if len(buf) < 2:
        return None
    size, at = buf[1] & 0x7F, 2
    if size >= 126:
        at = 4 if size == 126 else 10
        if len(buf) < at:
            return None
        size = int.from_bytes(buf[2:at], "big")
    if len(buf) < at + size:
        return None
    return buf[0], buf[at : at + size], buf[at + size :]


# -- the server under callgrind -------------------------------------------------------


class Server:
    """``wsroute run`` under callgrind; :meth:`dump` returns the instructions since the
    previous dump (a dump zeroes the counters)."""

    def __init__(self, app: str, deflate: bool, workdir: Path) -> None:
        self.deflate = deflate
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        name = f"{app.replace(':', '-')}{'-deflate' if deflate else ''}"
        self.out = workdir / f"{name}.callgrind"
        self.dumps = 0
        wsroute = str(Path(sys.executable).parent / "wsroute")
        command = [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}"),
            *(wsroute, "run", app, "--port", str(self.port), *QUIET),
            *(("--compression", "deflate") if deflate else ()),
        ]
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(command, cwd=SERVERS, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{name} did not start; see {self.log.name}") from None
                time.sleep(0.5)

    def dump(self) -> int:
        subprocess.run(
            ["callgrind_control", "--dump", str(self.proc.pid)], check=True, capture_output=True
        )
        self.dumps += 1
        path = Path(f"{self.out}.{self.dumps}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.exists():
                found = re.search(
                    r"^(?:summary|totals): (\d+)", path.read_text(errors="replace"), re.MULTILINE
                )
                if found:
                    return int(found.group(1))
            time.sleep(0.2)
        raise RuntimeError(f"callgrind wrote no {path.name}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()


# -- the measurements -----------------------------------------------------------------


def wire_name(encoding: str, deflate: bool) -> str:
    """``json``, ``msgpack`` or ``mixed``, with ``+deflate`` when negotiated."""
    return encoding + ("+deflate" if deflate else "")


def measure_rpc(
    server: Server, items: list[dict[str, Any]] | None, use_msgpack: bool, requests: int
) -> dict[str, Any]:
    client = Client(server.port, use_msgpack, server.deflate)
    for seq in range(WARMUP):
        client.echo(seq, items)
    server.dump()
    client.sent = client.received = client.pings = 0
    for seq in range(requests):
        client.echo(seq, items)
    spent = server.dump()
    client.close()
    return {
        "instructions": round(spent / requests),
        "up_bytes": round(client.sent / requests, 1),
        "down_bytes": round(client.received / requests, 1),
        "pings": client.pings,
    }


def measure_fanout(
    server: Server,
    items: list[dict[str, Any]] | None,
    mix: str,
    subscribers: int,
    broadcasts: int,
) -> dict[str, Any]:
    speaks_msgpack = MIXES[mix]
    clients = [Client(server.port, speaks_msgpack(i), server.deflate) for i in range(subscribers)]
    for client in clients:
        client.echo(0, items)  # set up and subscribed before anything is counted

    def broadcast(seq: int) -> None:
        clients[0].send({"type": "blast", "data": _stamp(seq, items)})
        for client in clients:
            event = client.receive()
            assert event["type"] == "blast" and event["data"]["seq"] == seq, str(event)[:200]

    for seq in range(FANOUT_WARMUP):
        broadcast(seq)
    server.dump()
    for client in clients:
        client.sent = client.received = client.pings = 0
    for seq in range(broadcasts):
        broadcast(seq)
    spent = server.dump()
    for client in clients:
        client.close()
    return {
        "instructions_per_broadcast": round(spent / broadcasts),
        "instructions_per_delivery": round(spent / broadcasts / subscribers),
        "down_bytes": round(sum(c.received for c in clients) / broadcasts / subscribers, 1),
        "up_bytes": round(clients[0].sent / broadcasts, 1),
        "pings": sum(c.pings for c in clients),
    }


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    rows = []
    sizes = [int(n) for n in args.subscribers.split(",")]
    for n_items in (int(n) for n in args.items.split(",")):
        items = items_of(n_items) if n_items else None
        app = "wsroute_app:items_app" if n_items else "wsroute_app:app"
        for deflate in (False, True):
            server = Server(app, deflate, workdir)
            try:
                for use_msgpack in (False, True):
                    wire = wire_name("msgpack" if use_msgpack else "json", deflate)
                    found = measure_rpc(server, items, use_msgpack, args.requests)
                    rows.append({"scenario": "rpc", "items": n_items, "wire": wire, **found})
                    print(json.dumps(rows[-1]), flush=True)
                for mix in MIXES:
                    for size in sizes:
                        wire = wire_name(mix, deflate)
                        found = measure_fanout(server, items, mix, size, args.broadcasts)
                        row = {"scenario": "fanout", "items": n_items, "wire": wire}
                        rows.append(row | {"subscribers": size, **found})
                        print(json.dumps(rows[-1]), flush=True)
            finally:
                server.stop()
    return rows


# -- the tables -----------------------------------------------------------------------


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join("---" for _ in rows[0]) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _k(instructions: float) -> str:
    return f"{instructions / 1000:,.1f} k"


def rpc_table(rows: list[dict[str, Any]]) -> str:
    table = [["items", "wire", "instructions/request", "÷ json", "bytes/request", "bytes/reply"]]
    for row in (r for r in rows if r["scenario"] == "rpc"):
        base = next(
            r for r in rows if r["scenario"] == "rpc" and r["items"] == row["items"]
        )  # json, deflate off: the first of its payload
        table.append(
            [
                str(row["items"]),
                row["wire"],
                _k(row["instructions"]),
                f"{row['instructions'] / base['instructions']:.2f}x",
                f"{row['up_bytes']:,.0f}",
                f"{row['down_bytes']:,.0f}",
            ]
        )
    return _markdown(table)


def fanout_table(rows: list[dict[str, Any]]) -> str:
    """Per delivery at the largest size and, from two sizes, the cost of a broadcast
    split: once per broadcast + each recipient."""
    fanout = [r for r in rows if r["scenario"] == "fanout"]
    sizes = sorted({r["subscribers"] for r in fanout})
    small, large = sizes[0], sizes[-1]
    table = [
        [
            "items",
            "wire",
            f"instructions/delivery ({large} subscribers)",
            "each recipient",
            "once per broadcast",
            "bytes/delivery",
            "bytes/broadcast published",
        ]
    ]
    for row in (r for r in fanout if r["subscribers"] == large):
        each = once = "-"
        if small != large:
            other = next(
                r
                for r in fanout
                if (r["items"], r["wire"], r["subscribers"]) == (row["items"], row["wire"], small)
            )
            slope = (row["instructions_per_broadcast"] - other["instructions_per_broadcast"]) / (
                large - small
            )
            each = _k(slope)
            once = _k(other["instructions_per_broadcast"] - small * slope)
        table.append(
            [
                str(row["items"]),
                row["wire"],
                _k(row["instructions_per_delivery"]),
                each,
                once,
                f"{row['down_bytes']:,.0f}",
                f"{row['up_bytes']:,.0f}",
            ]
        )
    return _markdown(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="0,24", help="catalogue items per message, e.g. 0,24")
    parser.add_argument("--requests", type=int, default=300, help="rpc: requests measured")
    parser.add_argument("--broadcasts", type=int, default=30, help="fanout: broadcasts measured")
    parser.add_argument(
        "--subscribers", default="10,100", help="fanout: connection counts (two split the cost)"
    )
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    pings = sum(row["pings"] for row in rows)
    print(f"\nrpc: server instructions and bytes per request ({args.requests} requests)\n")
    print(rpc_table(rows))
    print(f"\nfanout: server instructions and bytes per delivery ({args.broadcasts} broadcasts)\n")
    print(fanout_table(rows))
    if pings:
        print(f"\n{pings} heartbeat pings (and pongs) fell in the measured windows")


if __name__ == "__main__":
    main()
