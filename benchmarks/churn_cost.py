"""Server instructions per connection cycle, counted by valgrind: a figure the VM's
drifting speed cannot move.

    .venv/bin/python benchmarks/churn_cost.py [--cycles 200] [--servers wsroute,websockets]

Runs each server under ``valgrind --tool=callgrind`` and drives it from this process
with sequential cycles on raw sockets: connect, upgrade, one ``echo`` request, close
(client first), exactly as ``churn`` does but one at a time. The counters are dumped
after a few warm-up cycles and again after ``--cycles`` more; the second dump divided
by the cycles is the server's cost of one cycle in instructions (no sampling, no
timing). Needs valgrind and the reference venvs that ``run.py`` creates. Slow: the
servers run about 50 times slower under valgrind.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _callgrind import dump_total

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
WARMUP = 20
QUIET = ("--log-level", "warning")  # as run.py serves it: no log line per connection


def _commands(port: int) -> dict[str, list[str]]:
    wsroute = str(Path(sys.executable).parent / "wsroute")
    venvs = HERE / ".venvs"
    return {
        "wsroute": [wsroute, "run", "wsroute_app:app", "--port", str(port), *QUIET],
        "trio-websocket": [
            str(venvs / "trio-websocket" / "bin" / "python"),
            "trio_websocket_server.py",
            str(port),
        ],
        "websockets": [
            str(venvs / "websockets" / "bin" / "python"),
            "websockets_server.py",
            str(port),
        ],
    }


def _frame(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


def _read_frame(sock: socket.socket, buf: bytes) -> tuple[int, bytes]:
    while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection early")
        buf += chunk
    size = buf[1] & 0x7F
    assert size < 126, "the benchmark protocol's frames are small"
    return buf[0] & 0x0F, buf[2 + size :]


def _cycle(port: int, seq: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head[:80]
        request = {"type": "echo", "id": seq, "data": {"seq": seq, "t": 1.5}}
        sock.sendall(_frame(0x1, json.dumps(request).encode()))
        while (found := _read_frame(sock, buf))[0] != 0x1:
            buf = found[1]
        buf = found[1]
        sock.sendall(_frame(0x8, struct.pack("!H", 1000)))
        while (found := _read_frame(sock, buf))[0] != 0x8:
            buf = found[1]


def measure(name: str, cycles: int, workdir: Path) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = workdir / f"{name}.callgrind"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command + _commands(port)[name], cwd=SERVERS, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {log.name}") from None
                time.sleep(0.5)
        for seq in range(WARMUP):
            _cycle(port, seq)
        dump_total(out, server.pid, 0)  # start, imports and warm-up
        for seq in range(cycles):
            _cycle(port, WARMUP + seq)
        spent = dump_total(out, server.pid, 1)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
        log.close()
    return spent / cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--servers", default="wsroute,trio-websocket")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.servers.split(","):
            results[name] = measure(name, args.cycles, Path(tmp))
            print(json.dumps({"server": name, "instructions_per_cycle": round(results[name])}))
    if len(results) > 1:
        first, *others = results
        for other in others:
            print(f"{first} / {other}: {results[first] / results[other]:.2f}x")


if __name__ == "__main__":
    main()
