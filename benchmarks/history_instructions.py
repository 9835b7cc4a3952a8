"""Server instructions per acknowledged broadcast without and with history, counted by
valgrind: history's cost to a server whose CPU bounds its throughput, in a figure the
VM's drifting speed cannot move.

    .venv/bin/python benchmarks/history_instructions.py [--acks 3000] [--rounds 3]
        [--clients 32] [--window 8]

The end-to-end part of ``history.py`` measures broadcasts acknowledged per second,
and on this shared VM rounds of the same code spread over tens of points. Here a
``wsroute run`` process serves the app of ``redis_fanout.py`` under ``valgrind
--tool=callgrind``, on a private redis-server (not under valgrind: Redis is quick
next to the slowed server, as when it has a host of its own), without history or
with ``History(size=1000, ttl=300)`` on every topic. ``--clients`` WebSocket clients
(trio-websocket) each keep ``--window`` broadcasts in flight; each broadcast is a
request decoded, validated, handled, its event encoded and kept in Redis, and the
reply sent once Redis took the event. The counters are dumped after a warm-up and
again after ``--acks`` more acknowledged broadcasts: the server's instructions per
broadcast. Rounds alternate which server goes first. The cost reported is what
history takes from the throughput of a server bound by its CPU: ``1 - without /
with``. How often the event loop turns, and so how large the pipelines to Redis are,
depends on timing even under valgrind: compare rounds. Needs valgrind; a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import trio
from _callgrind import dump_total
from redis_fanout import APP, clients, redis_server

WARMUP = 500
KEPT = '{"*": History(size=1000, ttl=300)}'


async def acknowledge(connections: list[Any], window: int, total: int) -> None:
    """Broadcast until ``total`` are acknowledged, spread over ``connections``, each
    keeping ``window`` in flight."""
    share, extra = divmod(total, len(connections))

    async def client(ws: Any, count: int) -> None:
        sent = acked = 0
        while acked < count:
            while sent < count and sent - acked < window:
                sent += 1
                await ws.send_message(
                    orjson.dumps({"type": "void", "id": sent, "data": sent}).decode()
                )
            frame = orjson.loads(await ws.get_message())
            if "ok" in frame:
                if not frame["ok"]:
                    raise RuntimeError(f"a broadcast failed: {frame}")
                acked += 1

    async with trio.open_nursery() as nursery:
        for n, ws in enumerate(connections):
            nursery.start_soon(client, ws, share + (n < extra))


def _serve(
    kept: bool, redis_port: int, workdir: Path, out: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """A ``wsroute run`` process under callgrind, and its port once it accepts."""
    app_dir = workdir / ("kept" if kept else "plain")
    app_dir.mkdir(exist_ok=True)
    source = textwrap.dedent(APP).replace("history=HISTORY", f"history={KEPT if kept else None}")
    (app_dir / "benchapp.py").write_text(source)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-m", "wsroute", "run", "benchapp:app", "--port", str(port)]
    command += ["--broker", f"redis://127.0.0.1:{redis_port}", "--log-level", "warning"]
    log = open(workdir / f"{out.stem}.log", "wb")  # noqa: SIM115 - the server's for its life
    server = subprocess.Popen(command, cwd=app_dir, stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"the server did not start; see {log.name}") from None
            time.sleep(0.5)


async def measure(kept: bool, redis_port: int, args: argparse.Namespace, workdir: Path) -> float:
    """One server's instructions per acknowledged broadcast."""
    out = workdir / f"{'kept' if kept else 'plain'}-{time.monotonic_ns()}.callgrind"
    server, port = _serve(kept, redis_port, workdir, out)
    try:
        async with clients([port], args.clients) as connections:
            await acknowledge(connections, args.window, WARMUP)
            dump_total(out, server.pid, 0)  # start-up, imports, handshakes and warm-up
            await acknowledge(connections, args.window, args.acks)
            spent = dump_total(out, server.pid, 1)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    return spent / args.acks


async def main(args: argparse.Namespace) -> None:
    print(f"{args.clients} clients, {args.window} in flight each, {args.acks} acks per figure")
    found: dict[bool, list[float]] = {False: [], True: []}
    costs = []
    with contextlib.ExitStack() as stack:
        scratch = args.scratch or stack.enter_context(tempfile.TemporaryDirectory())
        async with redis_server() as (redis_port, version):
            print(f"redis-server {version}")
            for n in range(args.rounds):
                per = {}
                for kept in (False, True) if n % 2 == 0 else (True, False):
                    per[kept] = await measure(kept, redis_port, args, Path(scratch))
                    found[kept].append(per[kept])
                costs.append((1 - per[False] / per[True]) * 100)
                print(
                    f"round {n + 1}: without history {per[False]:,.0f}, with {per[True]:,.0f}"
                    f" instructions per ack; cost {costs[-1]:.1f} %",
                    flush=True,
                )
    plain, kept_median = (statistics.median(found[k]) for k in (False, True))
    print(
        f"median: without history {plain:,.0f}, with {kept_median:,.0f} instructions per ack;"
        f" cost median {statistics.median(costs):.1f} % (rounds: "
        + ", ".join(f"{cost:.1f}" for cost in costs)
        + ")"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--acks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument(
        "--scratch", help="where callgrind writes (kept; default: a temporary directory)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_args())
