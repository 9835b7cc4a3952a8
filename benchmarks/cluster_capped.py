"""Fan-out throughput when Redis is the bottleneck: every Redis node capped to one slice of a core.

A benchmark, not a test. On a small machine the Redis nodes, the server processes and
the clients share the same cores, so the wall clock of ``cluster_fanout.py`` cannot
show what more shards give. Here each redis-server gets a cgroup of its own limited to
the same fraction of one core (``--redis-cpu``, CFS quota every ``--period-ms``;
_cpucap.py): as if each node ran on a slow core of its own, while the server processes
and the clients keep the rest of the machine. Redis is then the bottleneck and the
wall clock measures saturated throughput with one Redis and with 1, 3 and 6 shards.

For each setup (``redis``: one redis-server, PUBLISH; ``cluster-N``: a local Redis
Cluster of N masters, sharded pub/sub) and each count of ``wsroute run`` processes
(``--servers``), closed-loop load:

- ``--publishers`` connections per process each keep ``--window`` ``say`` broadcasts
  in flight (with an id: acknowledged once Redis took the event), to the topics in
  turn; a new one goes out as each acknowledgement comes back;
- ``--topics`` topics, each joined by one subscriber on every process
  (``--subscribers`` connections per process), which count the deliveries. Many, so
  that none takes a large share: a client task takes one message per turn of trio's
  scheduler, and a few busy subscribers fell behind the publishers' acknowledgements.

After ``--warmup`` seconds, ``--seconds`` are measured: acknowledged broadcasts and
deliveries per second, p50/p99 from sending a broadcast to its acknowledgement, and
CPU: each node's (``/proc/PID/task/*/schedstat``) as a share of its cap and how often
the kernel throttled it, the server processes', this process's and the machine's.
Each node's idle CPU (a second before the load: cron, cluster gossip) is shown as a
share of its cap too: under a cap of a few milliseconds a second it is not negligible.
Afterwards the publishers stop, the deliveries drain and delivered/expected is checked
(expected: every acknowledged event once on every process).

The clusters run with Redis's default ``cluster-node-timeout`` of 15 s
(``--node-timeout-ms``), as production clusters do, not the tests' 1 s: a node pings
each peer whose last pong is older than half the timeout, so the tests' value sends
each node's peers a ping every half second, gossip that takes a large share of a cap
this small and that a production cluster does not pay.

A row is Redis-bound when one of its nodes ran out of quota in at least
``REDIS_BOUND`` of the periods (work was waiting for it nearly all the time: using its
whole cap is not enough, a node fed a trickle of small reads spends its cap on their
overhead while idle in between) and the deliveries kept pace (``KEEP_PACE``, and all
arrived); otherwise something else (the processes, the clients, the window) held
throughput back, and the row says "process-bound": its ratio to ``redis`` is not a
Redis ceiling.

Usage (from the repository root, as root for the cgroups; figures in docs/performance.md)::

    .venv/bin/python benchmarks/cluster_capped.py [--redis-cpu 0.003] [--period-ms 10]
        [--servers 2,4] [--setups redis,cluster-1,cluster-3,cluster-6] [--seconds 5]
        [--warmup 2] [--publishers 8] [--window 32] [--topics 1024] [--subscribers 16]
        [--per-node] [--node-timeout-ms 15000] [--json FILE]
    .venv/bin/python benchmarks/cluster_capped.py --quick      # about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import trio
import trio_websocket
from _cpucap import CapError, CapGroup, Throttling, capped, controller, period_for, process_cpu
from _rediscpu import (
    Snapshot,
    machine_cpu,
    node_pids,
    redis_figures,
    redis_nodes,
    snapshot,
    subscriber_backlog,
)
from _wires import WsrouteWire
from cluster_fanout import SERVERS, SETUP_TIMEOUT, SETUPS, join_all, reason
from redis_fanout import clients, percentile, wsroute_processes

#: A row is Redis-bound when a node was throttled in at least this share of periods.
REDIS_BOUND = 0.9
#: ... and its deliveries per second were at least this share of acked/s x servers.
KEEP_PACE = 0.9
DRAIN_TIMEOUT = 15.0  # seconds for the last acknowledgements, then the last deliveries
CAPPED_SETUPS = [name for name, setup in SETUPS.items() if not setup.socketio]


@dataclass
class Counts:
    """What the client tasks saw. ``latencies`` (ns, send to acknowledgement) are kept
    only while ``measuring``; ``stopping`` tells publishers to send no more."""

    acked: int = 0
    delivered: int = 0
    errors: int = 0
    first_error: str = ""
    closed: int = 0
    unanswered: int = 0
    measuring: bool = False
    stopping: bool = False
    latencies: list[int] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or text[:300]


async def subscriber(ws: Any, counts: Counts) -> None:
    """Count the events; an error reply (none is expected) is counted too."""
    try:
        while True:
            frame = await ws.get_message()
            if '"ok"' in frame:  # events have no "ok"; replies do
                if orjson.loads(frame).get("ok") is False:
                    counts.error(frame)
            else:
                counts.delivered += 1
    except trio_websocket.ConnectionClosed:
        counts.closed += 1


async def publisher(
    ws: Any, topics: list[str], first: int, step: int, window: int, counts: Counts
) -> None:
    """Keep ``window`` broadcasts in flight until ``counts.stopping``, then collect the
    acknowledgements still due (the caller bounds that). Broadcast ``k`` goes to
    topic ``first + k * step``, so that the publishers cover every topic in turn."""
    in_flight = k = 0
    try:
        while not counts.stopping or in_flight:
            while in_flight < window and not counts.stopping:
                topic = topics[(first + k * step) % len(topics)]
                data = {"topic": topic, "i": k, "t": time.perf_counter_ns()}
                await ws.send_message(orjson.dumps({"type": "say", "id": k, "data": data}).decode())
                k += 1
                in_flight += 1
            reply = orjson.loads(await ws.get_message())
            if "ok" not in reply:
                continue
            in_flight -= 1
            if not reply["ok"]:
                counts.error(str(reply))
                continue
            counts.acked += 1
            if counts.measuring:
                counts.latencies.append(time.perf_counter_ns() - reply["data"]["t"])
    except trio_websocket.ConnectionClosed:
        counts.closed += 1
    finally:
        counts.unanswered += in_flight


@dataclass(frozen=True)
class Mark:
    """Counters at one moment: the clients' counts, CPU seconds of each Redis node, of
    the server processes together, of this process and of the machine, and each
    node's throttling."""

    at: float
    acked: int
    delivered: int
    node_cpu: list[float]
    server_cpu: float
    client_cpu: float
    machine_cpu: float
    throttling: list[Throttling]


def mark(counts: Counts, groups: list[CapGroup], server_pids: list[int]) -> Mark:
    return Mark(
        at=time.perf_counter(),
        acked=counts.acked,
        delivered=counts.delivered,
        node_cpu=[process_cpu(group.pid) for group in groups],
        server_cpu=sum(process_cpu(pid) for pid in server_pids),
        client_cpu=time.process_time(),
        machine_cpu=machine_cpu(),
        throttling=[group.throttling() for group in groups],
    )


async def measure(
    ports: list[int],
    nodes: list[int],
    groups: list[CapGroup],
    server_pids: list[int],
    publishing: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Connect and join, load for ``--warmup`` + ``--seconds``, drain; one row.
    ``publishing`` connections per server keep ``--window`` broadcasts in flight each."""
    wire = WsrouteWire()
    topics = [f"t{n}" for n in range(args.topics)]
    random.Random(23).shuffle(topics)
    servers = len(ports)
    counts = Counts()
    async with (
        clients(ports, servers * args.subscribers) as subscribers,
        clients(ports, servers * publishing) as publishers,
        trio.open_nursery() as nursery,
    ):
        with trio.fail_after(SETUP_TIMEOUT):
            await join_all(subscribers, wire, topics, servers)
        idle = await idle_share(groups, args.redis_cpu)
        for ws in subscribers:
            nursery.start_soon(subscriber, ws, counts)
        async with trio.open_nursery() as sending:
            for n, ws in enumerate(publishers):
                step = len(publishers)
                sending.start_soon(publisher, ws, topics, n, step, args.window, counts)
            await trio.sleep(args.warmup)
            before, redis_before = mark(counts, groups, server_pids), await snapshot(nodes)
            counts.measuring = True
            await trio.sleep(args.seconds)
            counts.measuring = False
            after, redis_after = mark(counts, groups, server_pids), await snapshot(nodes)
            backlog = await subscriber_backlog(nodes)
            counts.stopping = True
            sending.cancel_scope.deadline = trio.current_time() + DRAIN_TIMEOUT
        expected = counts.acked * servers
        with trio.move_on_after(DRAIN_TIMEOUT):
            while counts.delivered < expected:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    row = figures(counts, before, after, redis_before, redis_after, servers, args)
    return {**row, "redis_backlog_bytes": backlog, "node_idle_of_cap": idle}


async def idle_share(groups: list[CapGroup], fraction: float, seconds: float = 1.0) -> list[float]:
    """Each node's CPU while nothing is published (cron; in a cluster, the bus's
    gossip), as a share of its cap: CPU a saturated node cannot spend on events. On a
    core of its own that would be a fraction of a percent; under a cap of a few
    milliseconds a second it is not."""
    before = [process_cpu(group.pid) for group in groups]
    began = time.perf_counter()
    await trio.sleep(seconds)
    elapsed = time.perf_counter() - began
    return [
        (process_cpu(group.pid) - cpu) / elapsed / fraction
        for group, cpu in zip(groups, before, strict=True)
    ]


def figures(
    counts: Counts,
    before: Mark,
    after: Mark,
    redis_before: Snapshot,
    redis_after: Snapshot,
    servers: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One row: the measured window's rates and CPU, the whole run's delivery check."""
    elapsed = after.at - before.at
    node_cores = [(a - b) / elapsed for a, b in zip(after.node_cpu, before.node_cpu, strict=True)]
    of_cap = [cores / args.redis_cpu for cores in node_cores]
    throttled = [
        (a.throttled - b.throttled) / max(1, a.periods - b.periods)
        for a, b in zip(after.throttling, before.throttling, strict=True)
    ]
    redis = redis_figures(redis_before, redis_after, [0.0] * len(node_cores))
    busiest = max(range(len(of_cap)), key=of_cap.__getitem__)
    busiest_events = redis["node_publishes"][busiest]
    ordered = sorted(counts.latencies)
    server_cores = (after.server_cpu - before.server_cpu) / elapsed
    client_cores = (after.client_cpu - before.client_cpu) / elapsed
    machine_cores = (after.machine_cpu - before.machine_cpu) / elapsed
    acked_per_s = (after.acked - before.acked) / elapsed
    deliveries_per_s = (after.delivered - before.delivered) / elapsed
    # Deliveries kept pace with the acknowledgements while measured, every acknowledged
    # event arrived in the end, and no error: else the processes (servers, clients)
    # fell behind, whatever Redis did. A broker session that falls far behind drops.
    complete = (
        deliveries_per_s >= KEEP_PACE * servers * acked_per_s
        and counts.delivered >= counts.acked * servers
        and not counts.errors
    )
    return {
        "servers": servers,
        "seconds": round(elapsed, 3),
        "acked_per_s": acked_per_s,
        "deliveries_per_s": deliveries_per_s,
        "acked": counts.acked,
        "delivered": counts.delivered,
        "expected": counts.acked * servers,
        "unanswered": counts.unanswered,
        "errors": counts.errors,
        "first_error": counts.first_error,
        "closed": counts.closed,
        "p50_ms": percentile(ordered, 0.50) / 1e6 if ordered else float("nan"),
        "p99_ms": percentile(ordered, 0.99) / 1e6 if ordered else float("nan"),
        "node_of_cap": of_cap,
        "node_throttled": throttled,
        "busiest_of_cap": max(of_cap),
        "complete": complete,
        "busiest_throttled": max(throttled),
        "redis_bound": max(throttled) >= REDIS_BOUND and complete,
        "server_cores": server_cores,
        "client_cores": client_cores,
        "machine_cores": machine_cores,
        # The machine's busy cores that are not this benchmark's: other work on the
        # machine, competing with the servers and clients (not with the capped nodes).
        # Roughly: /proc/stat leaves interrupts out, a task's schedstat does not.
        "other_cores": machine_cores - server_cores - client_cores - sum(node_cores),
        "node_publishes": redis["node_publishes"],
        "busiest_share": max(redis["node_publishes"]) / max(1, redis["published"]),
        "busiest_events_per_read": busiest_events / max(1, redis["node_reads"][busiest]),
        # CPU per event of the busiest node (its CPU over the measured window, its
        # publishes over the INFO snapshots' window: nearly the same seconds)
        "busiest_us_per_event": 1e6 * node_cores[busiest] * elapsed / max(1, busiest_events),
    }


async def run_setup(
    name: str, servers: int, period_us: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Start the setup's Redis nodes, cap each, start the servers, measure."""
    # With --per-node, as many broadcasts in flight per node as one Redis gets.
    publishing = args.publishers * (max(1, SETUPS[name].shards) if args.per_node else 1)
    async with redis_nodes(SETUPS[name].shards, args.node_timeout_ms) as (url, nodes):
        pids = await node_pids(nodes)
        with capped(pids, args.redis_cpu, period_us) as groups:
            server_pids: list[int] = []
            target = "wsroute_topics:app"
            async with wsroute_processes(
                url, servers, app_dir=SERVERS, target=target, pids=server_pids
            ) as ports:
                row = await measure(ports, nodes, groups, server_pids, publishing, args)
    in_flight = servers * publishing * args.window
    return {"setup": name, "publishers": publishing, "in_flight": in_flight, **row}


def line(row: dict[str, Any]) -> str:
    """One row as the progress output shows it."""
    caps = ", ".join(f"{100 * share:.0f}" for share in row["node_of_cap"])
    throttled = ", ".join(f"{100 * share:.0f}" for share in row["node_throttled"])
    return (
        f"  {row['setup']:<10} {row['servers']} servers, {row['in_flight']} in flight:"
        f" {row['acked_per_s']:>7,.0f} acked/s,"
        f" {row['deliveries_per_s']:>7,.0f} deliveries/s, {row['delivered']}/{row['expected']}"
        f" delivered; ack p50 {row['p50_ms']:.1f} p99 {row['p99_ms']:.1f} ms; nodes' CPU"
        f" % of cap: {caps} (throttled in {throttled} % of periods; idle, before the load:"
        f" {100 * max(row['node_idle_of_cap']):.0f} % of cap at most); cores: servers"
        f" {row['server_cores']:.2f}, client {row['client_cores']:.2f}, others"
        f" {row['other_cores']:.2f} (machine {row['machine_cores']:.2f}); busiest node"
        f" {100 * row['busiest_share']:.1f} % of"
        f" events, {row['busiest_events_per_read']:.1f} per read,"
        f" {row['busiest_us_per_event']:.1f} us per event; Redis holds"
        f" {sum(row['redis_backlog_bytes']) / 1024:,.0f} KiB for subscribers; {bound(row)}"
        + (f" ({row['errors']} errors, first: {row['first_error']})" if row["errors"] else "")
        + (f" ({row['unanswered']} unanswered)" if row["unanswered"] else "")
        + (f" ({row['closed']} connections closed)" if row["closed"] else "")
    )


def bound(row: dict[str, Any]) -> str:
    """What limited the row: Redis (a node ran out of quota nearly every period and
    every event arrived), or the processes (the nodes had time to spare, or the
    deliveries fell behind)."""
    if row["redis_bound"]:
        return "Redis-bound"
    if not row["complete"]:
        return "process-bound (deliveries behind)"
    return "process-bound"


def table(rows: list[dict[str, Any]]) -> str:
    """Every row as Markdown, acknowledged broadcasts also as a ratio to one Redis's
    with the same servers; a ratio is a Redis ceiling only where both rows are
    Redis-bound."""
    single = {r["servers"]: r for r in rows if r["setup"] == "redis"}
    out = [
        "| setup | servers | in flight | acked/s | deliveries/s | delivered/expected"
        " | ack p50 / p99 ms | nodes' CPU, % of cap (idle: most)"
        " | nodes throttled, % of periods"
        " | busiest node: events per read, µs per"
        " event | cores: servers / client / others | bound | ÷ redis |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        base = single.get(r["servers"])
        ratio = "-" if base is None else f"{r['acked_per_s'] / base['acked_per_s']:.2f}x"
        if base is not None and not (r["redis_bound"] and base["redis_bound"]):
            ratio += " (not Redis-bound)"
        caps = ", ".join(f"{100 * share:.0f}" for share in r["node_of_cap"])
        throttled = ", ".join(f"{100 * share:.0f}" for share in r["node_throttled"])
        out.append(
            f"| {r['setup']} | {r['servers']} | {r['in_flight']} | {r['acked_per_s']:,.0f}"
            f" | {r['deliveries_per_s']:,.0f} | {r['delivered']:,}/{r['expected']:,}"
            f" | {r['p50_ms']:.1f} / {r['p99_ms']:.1f}"
            f" | {caps} ({100 * max(r['node_idle_of_cap']):.0f}) | {throttled}"
            f" | {r['busiest_events_per_read']:.1f}, {r['busiest_us_per_event']:.1f}"
            f" | {r['server_cores']:.2f} / {r['client_cores']:.2f} / {r['other_cores']:.2f}"
            f" | {bound(r)} | {ratio} |"
        )
    return "\n".join(out)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


async def main(args: argparse.Namespace) -> None:
    try:
        _, v2 = controller()
    except CapError as exc:
        sys.exit(f"cannot cap Redis's CPU here: {exc}")
    period_us = period_for(args.redis_cpu, round(args.period_ms * 1000))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}; each Redis node capped to {100 * args.redis_cpu:g} %"
        f" of a core ({round(args.redis_cpu * period_us)} us every {period_us} us, cgroup"
        f" {'v2' if v2 else 'v1'}); {args.topics} topics, {args.subscribers} subscribers and"
        f" {args.publishers} publishers{' per shard' if args.per_node else ''} x {args.window}"
        f" in flight per server; cluster node timeout {args.node_timeout_ms} ms;"
        f" {args.warmup:g} s warm-up, {args.seconds:g} s measured; {load()}",
        flush=True,
    )
    rows, failures = [], []
    for servers in args.servers:
        for name in args.setups:
            try:
                rows.append(await run_setup(name, servers, period_us, args))
                print(line(rows[-1]), flush=True)
            except Exception as exc:  # one setup failing does not stop the others
                failures.append(f"{name} with {servers} servers: {reason(exc)}")
                print(f"  {failures[-1]}", flush=True)
    print(f"\n{load()}\n\n" + table(rows))
    if failures:
        print("\nnot measured:\n" + "\n".join(f"- {failure}" for failure in failures))
    if args.json:
        settings = {key: value for key, value in vars(args).items() if key != "json"}
        document = {"settings": {**settings, "period_us": period_us}, "rows": rows}
        Path(args.json).write_text(json.dumps(document, indent=1))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-cpu", type=float, default=0.003, help="each node's share of one core (0.003)"
    )
    parser.add_argument(
        "--period-ms",
        type=float,
        default=10.0,
        help="CFS period; lengthened so that the quota is at least 1 ms (10)",
    )
    parser.add_argument(
        "--servers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[2, 4],
        help="(2,4)",
    )
    parser.add_argument(
        "--setups",
        type=lambda text: text.split(","),
        default=CAPPED_SETUPS,
        help=f"any of {','.join(CAPPED_SETUPS)} (all)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured, per row (5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="load before measuring (2)")
    parser.add_argument("--publishers", type=int, default=8, help="per server process (8)")
    parser.add_argument(
        "--per-node",
        action="store_true",
        help="publishers per server times the shards: the same broadcasts in flight per"
        " node as one Redis gets, rather than the same clients for every setup",
    )
    parser.add_argument("--window", type=int, default=32, help="broadcasts in flight each (32)")
    parser.add_argument("--topics", type=int, default=1024, help="(1024)")
    parser.add_argument("--subscribers", type=int, default=16, help="per server process (16)")
    parser.add_argument(
        "--node-timeout-ms",
        type=int,
        default=15000,
        help="the clusters' cluster-node-timeout (15000, Redis's default, as in production):"
        " a node pings a peer once its last pong is half this old, and the tests' 1000"
        " makes that gossip a large share of a small cap",
    )
    parser.add_argument("--json", help="also write the settings and every row to this file")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 servers, 2 s measured, 1 s warm-up"
    )
    args = parser.parse_args()
    if unknown := set(args.setups) - set(CAPPED_SETUPS):
        parser.error(f"unknown setups {sorted(unknown)}: choose from {','.join(CAPPED_SETUPS)}")
    if not 0.001 <= args.redis_cpu <= 1:
        parser.error("--redis-cpu is a share of one core, from 0.001 to 1")
    if args.node_timeout_ms < 1:
        parser.error("--node-timeout-ms is a number of milliseconds, at least 1")
    if args.quick:
        args.servers, args.seconds, args.warmup = [2], 2.0, 1.0
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
