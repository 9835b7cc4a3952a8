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
   shard, when Redis is the bottleneck; "load" leaves each node's idle CPU out (read
   for a second before the runs), "raw" keeps it. Its ratio to ``redis`` at the same
   rate is the scaling the issue asks for (3 shards: >= 2.5x). A node's CPU per event
   falls as more events come per read (the busiest node's events per read are shown):
   compare setups where that figure is alike;
3. broker level (each setup but socketio): the same Redis driven by wsroute's broker
   alone, pipelined, as fast as one process can publish (:func:`broker_level`).

Usage (from the repository root; the figures are in docs/performance.md)::

    .venv/bin/python benchmarks/cluster_fanout.py [--servers 2,8] [--rates 500,6000]
        [--seconds 4] [--topics 1024] [--subscribers 8] [--setups redis,cluster-3]
        [--broker-seconds 3] [--node-timeout-ms 15000] [--json FILE]
    .venv/bin/python benchmarks/cluster_fanout.py --quick      # under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio_websocket
from _procs import free_port
from _rediscpu import Snapshot, idle_rates, redis_figures, redis_nodes, snapshot
from _setup import ensure_venv
from _wires import SocketioWire, Wire, WsrouteWire
from redis_fanout import clients, percentile, wsroute_processes

from wsroute.brokers import BrokerSession, from_url

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


@dataclass
class Tally:
    """What the receiving tasks saw: latencies (ns) of events, error replies, and
    connections the server closed (an overloaded wsroute closes a connection whose
    outbox is full)."""

    latencies: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    closed: int = 0


async def receive(ws: Any, wire: Wire, tally: Tally) -> None:
    try:
        while True:
            frame = await ws.get_message()
            sent = wire.sent_at(frame)
            if sent is not None:
                tally.latencies.append(time.perf_counter_ns() - sent)
            elif (answer := wire.answer(frame)) is not None:
                await ws.send_message(answer)
            elif wire.is_error(frame):
                tally.errors += 1
                tally.first_error = tally.first_error or str(frame)[:300]
    except trio_websocket.ConnectionClosed:
        tally.closed += 1


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
        idle = await idle_rates(nodes)
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
    tally.latencies, tally.errors, tally.first_error = [], 0, ""
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
        "first_error": tally.first_error,
        "closed": tally.closed,
        "seconds": round(elapsed, 3),
        "deliveries_per_s": len(ordered) / elapsed,
        "p50_ms": percentile(ordered, 0.50) / 1e6 if ordered else float("nan"),
        "p99_ms": percentile(ordered, 0.99) / 1e6 if ordered else float("nan"),
        "client_cores": (after.client_cpu - before.client_cpu) / elapsed,
        "machine_cores": (after.machine_cpu - before.machine_cpu) / elapsed,
    }
    return row, before, after


async def broker_level(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Redis as fast as wsroute's broker alone can drive it, without WebSockets.

    ``--broker-subscribers`` sessions of the setup's broker subscribe every topic (as
    that many server processes would); one more publishes from ``--tasks`` tasks, each
    to the topics in turn, for ``--broker-seconds``. Its publishes are pipelined (in
    a cluster: grouped per shard), so Redis gets them in batches, nearer to how a
    saturated Redis runs. Everything is in this process; a subscriber whose backlog
    is full drops (counted) rather than slowing Redis down.
    """
    topics = [f"t{n}" for n in range(args.topics)]
    random.Random(23).shuffle(topics)
    payload = b'{"type":"say","topic":"t0","data":{"topic":"t0","i":1,"t":1}}'
    published = received = 0

    async def count(session: BrokerSession) -> None:
        nonlocal received
        async for _ in session:
            received += 1

    async def publish(session: BrokerSession, first: int, deadline: float) -> None:
        nonlocal published
        n = first
        while trio.current_time() < deadline:
            await session.publish(topics[n % len(topics)], payload)
            published += 1
            n += args.tasks

    async with (
        redis_nodes(setup.shards, args.node_timeout_ms) as (url, nodes),
        AsyncExitStack() as stack,
    ):
        broker = from_url(url)
        subscribers = [
            await stack.enter_async_context(broker.connect())
            for _ in range(args.broker_subscribers)
        ]
        for session in subscribers:
            await session.subscribe_many(topics)
        publisher = await stack.enter_async_context(broker.connect())
        async with trio.open_nursery() as nursery:
            for session in subscribers:
                nursery.start_soon(count, session)
            idle = await idle_rates(nodes)
            before = await snapshot(nodes)
            async with trio.open_nursery() as sending:
                deadline = trio.current_time() + args.broker_seconds
                for task in range(args.tasks):
                    sending.start_soon(publish, publisher, task, deadline)
            sent_for = time.perf_counter() - before.at
            expected = published * len(subscribers)
            dropped = 0
            with trio.move_on_after(DRAIN_TIMEOUT):
                while received + dropped < expected:
                    await trio.sleep(0.01)
                    dropped = sum(getattr(s, "dropped", 0) for s in subscribers)
            after = await snapshot(nodes)
            nursery.cancel_scope.cancel()
    return {
        "setup": setup.name,
        "subscribers": len(subscribers),
        "published": published,
        "publishes_per_s": published / sent_for,
        "received": received,
        "dropped": dropped,
        "expected": expected,
        "client_cores": (after.client_cpu - before.client_cpu) / (after.at - before.at),
        **redis_figures(before, after, idle),
    }


def broker_table(rows: list[dict[str, Any]]) -> str:
    """The broker-level rows, each capacity also as a ratio to one Redis's."""
    base = next((r for r in rows if r["setup"] == "redis"), None)
    out = [
        "| setup | publishes/s | received (+ dropped)/expected"
        " | busiest node: share of events, events per read | capacity events/s: load / raw"
        " | ÷ redis: load / raw |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r['setup']} | {r['publishes_per_s']:,.0f}"
            f" | {r['received']:,} (+ {r['dropped']:,})/{r['expected']:,}"
            f" | {_busiest(r)} | {r['capacity_per_s']:,.0f} / {r['capacity_raw_per_s']:,.0f}"
            f" | {_ratios(r, base)} |"
        )
    return "\n".join(out)


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
        f" {row['busiest_events_per_read']:.2f} events/read,"
        f" capacity {row['capacity_per_s']:,.0f}/s ({row['capacity_raw_per_s']:,.0f})"
        + (f" ({row['errors']} errors, first: {row['first_error']})" if row["errors"] else "")
        + (f" ({row['closed']} connections closed so far)" if row["closed"] else "")
    )


def broker_line(row: dict[str, Any]) -> str:
    spread = row["node_publishes"]
    return (
        f"  {row['setup']:<10} {row['publishes_per_s']:>8,.0f} publishes/s,"
        f" {row['received']}(+{row['dropped']} dropped)/{row['expected']} received;"
        f" client cores {row['client_cores']:.2f}; publishes per node"
        f" {min(spread)}..{max(spread)}; busiest node {row['us_per_event']:.1f} us/event"
        f" ({row['us_per_event_raw']:.1f} with idle), {row['busiest_events_per_read']:.2f}"
        f" events/read, capacity {row['capacity_per_s']:,.0f}/s"
        f" ({row['capacity_raw_per_s']:,.0f})"
    )


def table(rows: list[dict[str, Any]]) -> str:
    """Every row as Markdown: each capacity also as a ratio to one Redis's at the same
    servers and rate; "load" without the nodes' idle CPU, "raw" with it."""
    single = {(r["servers"], r["rate"]): r for r in rows if r["setup"] == "redis"}
    out = [
        "| setup | servers | rate/s | delivered/expected | deliveries/s | p50 / p99 ms"
        " | cores: client / all | busiest node: share of events, events per read"
        " | capacity events/s: load / raw | ÷ redis: load / raw |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = _ratios(r, single.get((r["servers"], r["rate"])))
        out.append(
            f"| {r['setup']} | {r['servers']} | {r['rate']:g}"
            f" | {r['delivered']:,}/{r['expected']:,} | {r['deliveries_per_s']:,.0f}"
            f" | {r['p50_ms']:.1f} / {r['p99_ms']:.1f}"
            f" | {r['client_cores']:.2f} / {r['machine_cores']:.2f}"
            f" | {_busiest(r)} | {r['capacity_per_s']:,.0f} / {r['capacity_raw_per_s']:,.0f}"
            f" | {ratio} |"
        )
    return "\n".join(out)


def _busiest(row: dict[str, Any]) -> str:
    return f"{100 * row['busiest_share']:.1f} %, {row['busiest_events_per_read']:.2f}"


def _ratios(row: dict[str, Any], base: dict[str, Any] | None) -> str:
    if base is None:
        return "-"
    load = row["capacity_per_s"] / base["capacity_per_s"]
    return f"{load:.2f}x / {row['capacity_raw_per_s'] / base['capacity_raw_per_s']:.2f}x"


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
        f" per server, {args.seconds:g} s per rate; cluster node timeout"
        f" {args.node_timeout_ms} ms",
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
                    redis_nodes(setup.shards, args.node_timeout_ms) as (url, nodes),
                    server_processes(setup, url, servers) as ports,
                ):
                    rows += await measure(setup, ports, nodes, args)
            except Exception as exc:  # one setup failing does not stop the others
                failures.append(f"{name} with {servers} servers: {reason(exc)}")
                print(f"  {failures[-1]}", flush=True)
    broker_rows = []
    if args.broker_seconds > 0:
        print(
            f"broker level: {args.broker_subscribers} subscriber sessions, {args.tasks}"
            f" publishing tasks, {args.broker_seconds:g} s",
            flush=True,
        )
    for name in args.setups:
        if args.broker_seconds <= 0 or SETUPS[name].socketio:
            continue
        try:
            broker_rows.append(await broker_level(SETUPS[name], args))
            print(broker_line(broker_rows[-1]), flush=True)
        except Exception as exc:
            failures.append(f"{name} at broker level: {reason(exc)}")
            print(f"  {failures[-1]}", flush=True)
    print("\nEnd to end, over WebSockets:\n\n" + table(rows))
    if broker_rows:
        print("\nBroker level, no WebSockets:\n\n" + broker_table(broker_rows))
    if failures:
        print("\nnot measured:\n" + "\n".join(f"- {failure}" for failure in failures))
    if args.json:
        Path(args.json).write_text(json.dumps({"fanout": rows, "broker": broker_rows}, indent=1))


def parse_args() -> argparse.Namespace:
    def numbers(kind: type) -> Any:
        return lambda text: [kind(item) for item in text.split(",")]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=numbers(int), default=[2, 8], help="(2,8)")
    parser.add_argument(
        "--rates",
        type=numbers(float),
        default=[500.0, 1000.0, 3000.0, 6000.0],
        help="events per second, all publishers together (500,1000,3000,6000)",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="publishing per rate (4)")
    parser.add_argument("--topics", type=int, default=1024, help="(1024)")
    parser.add_argument("--subscribers", type=int, default=8, help="per server process (8)")
    parser.add_argument(
        "--setups",
        type=lambda text: text.split(","),
        default=list(SETUPS),
        help=f"any of {','.join(SETUPS)} (all)",
    )
    parser.add_argument(
        "--broker-seconds",
        type=float,
        default=3.0,
        help="publishing at broker level, without WebSockets; 0 skips it (3)",
    )
    parser.add_argument("--broker-subscribers", type=int, default=2, help="subscriber sessions (2)")
    parser.add_argument("--tasks", type=int, default=64, help="publishing tasks (64)")
    parser.add_argument(
        "--node-timeout-ms",
        type=int,
        default=15000,
        help="the clusters' cluster-node-timeout (15000, Redis's default, as in production;"
        " the runs recorded before 2026-12-06 had the tests' 1000)",
    )
    parser.add_argument("--json", help="also write every row to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 servers, 1000/s for 2 s, 256 topics, 4 subscribers each,"
        " 1 s at broker level",
    )
    args = parser.parse_args()
    if unknown := set(args.setups) - set(SETUPS):
        parser.error(f"unknown setups {sorted(unknown)}: choose from {','.join(SETUPS)}")
    if args.node_timeout_ms < 1:
        parser.error("--node-timeout-ms is a number of milliseconds, at least 1")
    if args.quick:
        args.servers, args.rates, args.seconds = [2], [1000.0], 2.0
        args.topics, args.subscribers, args.broker_seconds = 256, 4, 1.0
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
