"""Server instructions per request on an open connection, counted by valgrind: the
``rpc`` scenario's cost, in a figure the VM's drifting speed cannot move.

    .venv/bin/python benchmarks/rpc_cost.py [--requests 2000] [--servers wsroute,websockets]

Runs each server under ``valgrind --tool=callgrind`` and sends it ``echo`` requests
one at a time from one raw-socket connection, each waiting for its reply, as one of
the ``rpc`` scenario's clients does. The counters are dumped after a warm-up and again
after ``--requests`` more: the server's instructions per request and reply (no
sampling, no timing). Needs valgrind and the reference venvs that ``run.py`` creates.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
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


class _Client:
    """One connection that sends a request and waits for its reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.sock.recv(65536)
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head[:80]

    def echo(self, seq: int) -> None:
        request = {"type": "echo", "id": seq, "data": {"seq": seq, "t": 1.5}}
        self.sock.sendall(_frame(0x1, json.dumps(request).encode()))
        while (found := _read_frame(self.sock, self.buf))[0] != 0x1:
            self.buf = found[1]
        self.buf = found[1]


def measure(name: str, requests: int, workdir: Path) -> float:
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
        client = _Client(port)
        for seq in range(WARMUP * 10):
            client.echo(seq)
        dump_total(out, server.pid, 0)  # start, imports and warm-up
        for seq in range(requests):
            client.echo(seq)
        spent = dump_total(out, server.pid, 1)
        client.sock.close()
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
        log.close()
    return spent / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--servers", default="wsroute,trio-websocket")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.servers.split(","):
            results[name] = measure(name, args.requests, Path(tmp))
            print(json.dumps({"server": name, "instructions_per_request": round(results[name])}))
    if len(results) > 1:
        first, *others = results
        for other in others:
            print(f"{first} / {other}: {results[first] / results[other]:.2f}x")


if __name__ == "__main__":
    main()
