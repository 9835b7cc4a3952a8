"""Fan-out through Redis Cluster with 1, 3 and 6 shards, one Redis and python-socketio.

A benchmark, not a test. In one run, for each setup and each count of server
processes (``--servers``):

- ``redis``: ``wsroute run --broker redis://...`` on one redis-server (PUBLISH);
- ``cluster-N``: ``wsroute run --broker redis+cluster://...`` on a local Redis
  Cluster of N masters (tests/rediscluster.py; sharded pub/sub, SPUBLISH);
- ``socketio``: python-socketio's ``AsyncRedisManager`` on uvicorn
  (servers/socketio_redis_app.py, venv from requirements/socketio.txt), one Redis.

``--topics`` topics, each joined by one subscriber on every server process (so Redis
sends each event once to every process), and one publisher connection per process
sending small events to the topics in turn at each total rate of ``--rates`` for
``--seconds``. Every client runs in this process (one clock for latency).

Two kinds of figure, because on a small machine shards, servers and clients share the
same cores and the wall clock cannot show what more shards give:

1. wall clock: deliveries per second, delivered/expected, p50/p99 from send to
   receipt, this process's CPU and the machine's (client-bound or machine-bound);
2. Redis-bound capacity: each node's CPU time over the run (``INFO cpu``,
   ``used_cpu_user + used_cpu_sys``) and its publishes (``INFO commandstats``,
   ``publish`` + ``spublish`` calls). The shard that saturates first is the one with
   the most CPU for the same load, so ``capacity = events published / CPU seconds of
   the busiest node``: the events per second the setup would carry with a core per
   shard, when Redis is the bottleneck. Its ratio to ``redis`` (same servers, same
   rate) is the scaling the issue asks for (3 shards: >= 2.5x).

Usage (from the repository root; the figures are in docs/performance.md)::

    .venv/bin/python benchmarks/cluster_fanout.py [--servers 2,8] [--rates 1000,3000]
        [--seconds 4] [--topics 1024] [--subscribers 8] [--setups redis,cluster-3]
    .venv/bin/python benchmarks/cluster_fanout.py --quick      # under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coredis
import trio
from _procs import free_port
from _setup import ensure_venv
from _wires import SocketioWire, Wire, WsrouteWire
from redis_fanout import clients, percentile, redis_server, wsroute_processes

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
SETUP_TIMEOUT = 120.0  # seconds to start Redis, the servers, connect and join
DRAIN_TIMEOUT = 10.0  # seconds to wait for the last deliveries after publishing


@dataclass(frozen=True)
class Setup:
    name: str
    shards: int  # cluster masters; 0: one plain redis-server
    socketio: bool = False


SETUPS = {
    setup.name: setup
    for setup in (
        Setup("redis", 0),
        Setup("cluster-1", 1),
        Setup("cluster-3", 3),
        Setup("cluster-6", 6),
        Setup("socketio", 0, socketio=True),
    )
}


@contextmanager
def _cluster(masters: int) -> Iterator[Any]:
    """tests/rediscluster.py's cluster (the repository root is not on the path of a
    script run from benchmarks/)."""
    sys.path.insert(0, str(HERE.parent))
    from tests.rediscluster import running_cluster

    with running_cluster(masters) as cluster:
        yield cluster


@asynccontextmanager
async def redis_nodes(setup: Setup) -> AsyncIterator[tuple[str, list[int]]]:
    """Start the setup's Redis; yield its URL and the ports of its masters."""
    if setup.shards == 0:
        async with redis_server() as (port, _):
            yield f"redis://127.0.0.1:{port}", [port]
        return
    with _cluster(setup.shards) as cluster:  # blocks while the cluster forms
        yield cluster.url(), [node.port for node in cluster.nodes]


@asynccontextmanager
async def socketio_processes(redis_url: str, count: int) -> AsyncIterator[list[int]]:
    """``count`` uvicorn processes serving socketio_redis_app on ``redis_url``."""
    uvicorn = ensure_venv("socketio") / "uvicorn"
    env = {**os.environ, "BENCH_REDIS_URL": redis_url}
    processes: list[tuple[trio.Process, Any]] = []
    try:
        ports = []
        for _ in range(count):
            port, log = free_port(), tempfile.TemporaryFile()  # noqa: SIM115 - closed below
            command = [str(uvicorn), "socketio_redis_app:app", "--app-dir", str(SERVERS)]
            command += ["--port", str(port), "--log-level", "warning"]
            process = await trio.lowlevel.open_process(
                command, env=env, stdout=subprocess.DEVNULL, stderr=log
            )
            processes.append((process, log))
            with trio.fail_after(20):
                while not await _accepts(port):
                    if process.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(f"uvicorn exited: {log.read().decode()[-1500:]}")
                    await trio.sleep(0.05)
            ports.append(port)
        yield ports
    finally:
        for process, log in processes:
            process.kill()
            await process.wait()
            log.close()


async def _accepts(port: int) -> bool:
    try:
        await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
    except OSError:
        return False
    return True


@asynccontextmanager
async def server_processes(setup: Setup, url: str, count: int) -> AsyncIterator[list[int]]:
    if setup.socketio:
        async with socketio_processes(url, count) as ports:
            yield ports
    else:
        target = "wsroute_topics:app"
        async with wsroute_processes(url, count, app_dir=SERVERS, target=target) as ports:
            yield ports


@dataclass(frozen=True)
class Snapshot:
    """Counters read at one moment: each node's CPU seconds and publishes so far, the
    CPU seconds of this process and of the whole machine."""

    at: float
    node_cpu: list[float]
    node_publishes: list[int]
    client_cpu: float
    machine_cpu: float


async def snapshot(nodes: list[int]) -> Snapshot:
    cpu, publishes = [], []
    for port in nodes:
        async with coredis.Redis(host="127.0.0.1", port=port, decode_responses=True) as node:
            used = await node.info("cpu")
            commands = await node.info("commandstats")
        cpu.append(float(used["used_cpu_user"]) + float(used["used_cpu_sys"]))
        publishes.append(
            sum(
                int(commands.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("publish", "spublish")
            )
        )
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    machine = (int(fields[1]) + int(fields[2]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")
    return Snapshot(time.perf_counter(), cpu, publishes, time.process_time(), machine)


def redis_figures(before: Snapshot, after: Snapshot, idle: list[float]) -> dict[str, Any]:
    """Redis's side of one run: publishes and CPU per node, the busiest node's CPU
    per event and the capacity it implies, raw and without each node's idle CPU
    (``idle``, seconds per second: cluster gossip and cron, which do not grow with
    the load, and weigh little on a saturated node)."""
    window = after.at - before.at
    cpu = [a - b for a, b in zip(after.node_cpu, before.node_cpu, strict=True)]
    load = [max(1e-6, c - rate * window) for c, rate in zip(cpu, idle, strict=True)]
    published = [a - b for a, b in zip(after.node_publishes, before.node_publishes, strict=True)]
    events = max(1, sum(published))
    return {
        "node_publishes": published,
        "node_cpu_s": cpu,
        "node_idle_ms_per_s": [1000 * rate for rate in idle],
        "published": sum(published),
        "us_per_event": 1e6 * max(load) / events,
        "us_per_event_raw": 1e6 * max(cpu) / events,
        "capacity_per_s": events / max(load),
        "capacity_raw_per_s": events / max(cpu),
    }


@dataclass
class Tally:
    """What the receiving tasks saw: latencies (ns) of events, error replies."""

    latencies: list[int] = field(default_factory=list)
    errors: int = 0


async def receive(ws: Any, wire: Wire, tally: Tally) -> None:
    while True:
        frame = await ws.get_message()
        sent = wire.sent_at(frame)
        if sent is not None:
            tally.latencies.append(time.perf_counter_ns() - sent)
        elif (answer := wire.answer(frame)) is not None:
            await ws.send_message(answer)
        elif wire.is_error(frame):
            tally.errors += 1


async def publish(ws: Any, wire: Wire, topics: list[str], schedule: Schedule) -> None:
    """Send the events of one publisher at its rate."""
    for k in range(schedule.total):
        await trio.sleep_until(schedule.start + k / schedule.per_second)
        topic = topics[(k * schedule.publishers + schedule.index) % len(topics)]
        await ws.send_message(wire.say(topic, k, time.perf_counter_ns()))


@dataclass(frozen=True)
class Schedule:
    """Publisher ``index`` of ``publishers`` sends ``total`` events at ``per_second``
    from ``start`` (trio time); its event ``k`` goes to topic ``k * publishers +
    index`` of the shuffled list, so that every topic gets its share."""

    index: int
    publishers: int
    per_second: float
    total: int
    start: float


async def join_all(subscribers: list[Any], wire: Wire, topics: list[str], servers: int) -> None:
    """Subscriber ``n`` is on server ``n % servers``; the ``j``-th on each server joins
    the topics ``j, j + per_server, ...``: every topic has one subscriber per server."""
    per_server = len(subscribers) // servers

    async def join(n: int, ws: Any) -> None:
        await wire.open(ws)
        await ws.send_message(wire.join(topics[n // servers :: per_server]))
        while not wire.joined(frame := await ws.get_message()):
            if (answer := wire.answer(frame)) is not None:
                await ws.send_message(answer)

    async with trio.open_nursery() as nursery:
        for n, ws in enumerate(subscribers):
            nursery.start_soon(join, n, ws)


async def measure(
    setup: Setup,
    ports: list[int],
    nodes: list[int],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Connect, join, read each node's idle CPU for a second, then one fan-out run per
    rate; a row of figures for each."""
    wire: Wire = SocketioWire() if setup.socketio else WsrouteWire()
    topics = [f"t{n}" for n in range(args.topics)]
    random.Random(23).shuffle(topics)
    servers, rows = len(ports), []
    async with (
        clients(ports, servers * args.subscribers, wire.resource) as subscribers,
        clients(ports, servers, wire.resource) as publishers,
        trio.open_nursery() as nursery,
    ):
        with trio.fail_after(SETUP_TIMEOUT):
            await join_all(subscribers, wire, topics, servers)
            for ws in publishers:
                await wire.open(ws)
        tally = Tally()
        for ws in subscribers + publishers:
            nursery.start_soon(receive, ws, wire, tally)
        before = await snapshot(nodes)
        await trio.sleep(1)
        after = await snapshot(nodes)
        idle = [
            (a - b) / (after.at - before.at)
            for a, b in zip(after.node_cpu, before.node_cpu, strict=True)
        ]
        for rate in args.rates:
            run = await run_rate(publishers, wire, topics, tally, nodes, rate, args.seconds)
            row, before, after = run
            redis = redis_figures(before, after, idle)
            rows.append({"setup": setup.name, "servers": servers, **row, **redis})
            print(line(rows[-1]), flush=True)
        nursery.cancel_scope.cancel()
    return rows


async def run_rate(
    publishers: list[Any],
    wire: Wire,
    topics: list[str],
    tally: Tally,
    nodes: list[int],
    rate: float,
    seconds: float,
) -> tuple[dict[str, Any], Snapshot, Snapshot]:
    """Publish at ``rate`` for ``seconds``, wait for the deliveries (bounded); the
    wall-clock figures, and the snapshots around the run."""
    servers = len(publishers)
    per_publisher = round(rate * seconds / servers)
    sent = per_publisher * servers
    expected = sent * servers  # each event: one subscriber on every server
    tally.latencies, tally.errors = [], 0
    before = await snapshot(nodes)
    async with trio.open_nursery() as sending:
        start = trio.current_time()
        for index, ws in enumerate(publishers):
            plan = Schedule(index, servers, rate / servers, per_publisher, start)
            sending.start_soon(publish, ws, wire, topics, plan)
    with trio.move_on_after(DRAIN_TIMEOUT):
        while len(tally.latencies) < expected:
            await trio.sleep(0.01)
    after = await snapshot(nodes)
    elapsed = after.at - before.at
    ordered = sorted(tally.latencies)
    row = {
        "rate": rate,
        "sent": sent,
        "delivered": len(ordered),
        "expected": expected,
        "errors": tally.errors,
        "seconds": round(elapsed, 3),
        "deliveries_per_s": len(ordered) / elapsed,
        "p50_ms": percentile(ordered, 0.50) / 1e6 if ordered else float("nan"),
        "p99_ms": percentile(ordered, 0.99) / 1e6 if ordered else float("nan"),
        "client_cores": (after.client_cpu - before.client_cpu) / elapsed,
        "machine_cores": (after.machine_cpu - before.machine_cpu) / elapsed,
    }
    return row, before, after


def line(row: dict[str, Any]) -> str:
    """One row as the progress output shows it."""
    spread = row["node_publishes"]
    return (
        f"  {row['setup']:<10} {row['servers']:>2} servers {row['rate']:>6g}/s:"
        f" {row['delivered']:>7}/{row['expected']:<7} {row['deliveries_per_s']:>8,.0f}/s"
        f" p50 {row['p50_ms']:6.1f} p99 {row['p99_ms']:7.1f} ms;"
        f" cores: client {row['client_cores']:.2f}, all {row['machine_cores']:.2f};"
        f" publishes per node {min(spread)}..{max(spread)}; busiest node"
        f" {row['us_per_event']:.1f} us/event ({row['us_per_event_raw']:.1f} with idle),"
        f" capacity {row['capacity_per_s']:,.0f}/s ({row['capacity_raw_per_s']:,.0f})"
        + (f" ({row['errors']} errors)" if row["errors"] else "")
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of docs/performance.md: each capacity also as a ratio to
    one Redis's at the same servers and rate; "load" without the nodes' idle CPU,
    "raw" with it."""
    single = {(r["servers"], r["rate"]): r for r in rows if r["setup"] == "redis"}
    out = [
        "| setup | servers | rate/s | delivered/expected | deliveries/s | p50 / p99 ms"
        " | cores: client / all | publishes per node | busiest node µs/event: load / raw"
        " | capacity events/s: load / raw | ÷ redis: load / raw |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        base = single.get((r["servers"], r["rate"]))
        ratio = "-"
        if base:
            load = r["capacity_per_s"] / base["capacity_per_s"]
            ratio = f"{load:.2f}x / {r['capacity_raw_per_s'] / base['capacity_raw_per_s']:.2f}x"
        spread = r["node_publishes"]
        out.append(
            f"| {r['setup']} | {r['servers']} | {r['rate']:g}"
            f" | {r['delivered']:,}/{r['expected']:,} | {r['deliveries_per_s']:,.0f}"
            f" | {r['p50_ms']:.1f} / {r['p99_ms']:.1f}"
            f" | {r['client_cores']:.2f} / {r['machine_cores']:.2f}"
            f" | {min(spread):,}-{max(spread):,}"
            f" | {r['us_per_event']:.1f} / {r['us_per_event_raw']:.1f}"
            f" | {r['capacity_per_s']:,.0f} / {r['capacity_raw_per_s']:,.0f} | {ratio} |"
        )
    return "\n".join(out)


def reason(exc: BaseException) -> str:
    """The first line of each error in ``exc`` (trio groups them)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(reason(inner) for inner in exc.exceptions)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


async def main(args: argparse.Namespace) -> None:
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}; {args.topics} topics, {args.subscribers} subscribers"
        f" per server, {args.seconds:g} s per rate",
        flush=True,
    )
    if any(SETUPS[name].socketio for name in args.setups):
        ensure_venv("socketio")
    rows, failures = [], []
    for name in args.setups:
        setup = SETUPS[name]
        for servers in args.servers:
            try:
                async with (
                    redis_nodes(setup) as (url, nodes),
                    server_processes(setup, url, servers) as ports,
                ):
                    rows += await measure(setup, ports, nodes, args)
            except Exception as exc:  # one setup failing does not stop the others
                failures.append(f"{name} with {servers} servers: {reason(exc)}")
                print(f"  {failures[-1]}", flush=True)
    print("\n" + table(rows))
    if failures:
        print("\nnot measured:\n" + "\n".join(f"- {failure}" for failure in failures))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def parse_args() -> argparse.Namespace:
    def numbers(kind: type) -> Any:
        return lambda text: [kind(item) for item in text.split(",")]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=numbers(int), default=[2, 8], help="(2,8)")
    parser.add_argument("--rates", type=numbers(float), default=[1000.0, 3000.0])
    parser.add_argument("--seconds", type=float, default=4.0, help="publishing per rate (4)")
    parser.add_argument("--topics", type=int, default=1024, help="(1024)")
    parser.add_argument("--subscribers", type=int, default=8, help="per server process (8)")
    parser.add_argument(
        "--setups",
        type=lambda text: text.split(","),
        default=list(SETUPS),
        help=f"any of {','.join(SETUPS)} (all)",
    )
    parser.add_argument("--json", help="also write every row to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 servers, 1000/s for 2 s, 256 topics, 4 subscribers each",
    )
    args = parser.parse_args()
    if unknown := set(args.setups) - set(SETUPS):
        parser.error(f"unknown setups {sorted(unknown)}: choose from {','.join(SETUPS)}")
    if args.quick:
        args.servers, args.rates, args.seconds = [2], [1000.0], 2.0
        args.topics, args.subscribers = 256, 4
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
