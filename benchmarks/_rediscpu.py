"""Redis's side of a fan-out benchmark: start it, and read what each node spent.

One private redis-server (redis_fanout.py's) or a local Redis Cluster
(tests/rediscluster.py's, no replicas). Each node's CPU seconds come from ``INFO cpu``
(``used_cpu_user + used_cpu_sys``: the whole process, as the kernel counts it) and its
publishes from ``INFO commandstats`` (``publish`` and ``spublish`` calls); the
machine's busy time from ``/proc/stat`` and this process's from ``time.process_time``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coredis
import trio
from redis_fanout import redis_server

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def _cluster(masters: int, node_timeout_ms: int | None) -> Iterator[Any]:
    """tests/rediscluster.py's cluster (the repository root is not on the path of a
    script run from benchmarks/), with the tests' node timeout unless given."""
    sys.path.insert(0, str(ROOT))
    from tests.rediscluster import NODE_TIMEOUT_MS, running_cluster

    timeout = NODE_TIMEOUT_MS if node_timeout_ms is None else node_timeout_ms
    with running_cluster(masters, node_timeout_ms=timeout) as cluster:
        yield cluster


@asynccontextmanager
async def redis_nodes(
    shards: int, node_timeout_ms: int | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """Start one redis-server (``shards`` 0) or a cluster of ``shards`` masters; yield
    the ``--broker`` URL and the ports of the masters. ``node_timeout_ms`` is the
    cluster's ``cluster-node-timeout`` (the tests' 1 s unless given): the bus's gossip
    grows as it shrinks."""
    if shards == 0:
        async with redis_server() as (port, _):
            yield f"redis://127.0.0.1:{port}", [port]
        return
    with _cluster(shards, node_timeout_ms) as cluster:  # blocks while the cluster forms
        yield cluster.url(), [node.port for node in cluster.nodes]


@dataclass(frozen=True)
class Snapshot:
    """Counters read at one moment: each node's CPU seconds, publishes and reads from
    its clients so far, the CPU seconds of this process and of the whole machine."""

    at: float
    node_cpu: list[float]
    node_publishes: list[int]
    node_reads: list[int]
    client_cpu: float
    machine_cpu: float


async def snapshot(nodes: list[int]) -> Snapshot:
    cpu, publishes, reads = [], [], []
    for port in nodes:
        async with coredis.Redis(host="127.0.0.1", port=port, decode_responses=True) as node:
            used = await node.info("cpu")
            commands = await node.info("commandstats")
            stats = await node.info("stats")
        reads.append(int(stats["total_reads_processed"]))
        cpu.append(float(used["used_cpu_user"]) + float(used["used_cpu_sys"]))
        publishes.append(
            sum(
                int(commands.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("publish", "spublish")
            )
        )
    return Snapshot(time.perf_counter(), cpu, publishes, reads, time.process_time(), machine_cpu())


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (user, nice, system), all cores."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    return (int(fields[1]) + int(fields[2]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")


async def node_pids(nodes: list[int]) -> list[int]:
    """The process id of the redis-server on each port of ``nodes`` (``INFO server``)."""
    pids = []
    for port in nodes:
        async with coredis.Redis(host="127.0.0.1", port=port, decode_responses=True) as node:
            pids.append(int(str((await node.info("server"))["process_id"])))
    return pids


def redis_figures(before: Snapshot, after: Snapshot, idle: list[float]) -> dict[str, Any]:
    """Redis's side of one run: publishes and CPU per node, the busiest node's CPU
    per event and the capacity it implies, raw and without each node's idle CPU
    (``idle``, seconds per second: cluster gossip and cron, which do not grow with
    the load, and weigh little on a saturated node).

    Also the busiest node's share of the events (with a core per node and enough
    load, the most the setup can carry is one node's capacity divided by it) and its
    events per read (how many publishes one read brought: the batching that makes
    a loaded node cheaper per event)."""
    window = after.at - before.at
    cpu = [a - b for a, b in zip(after.node_cpu, before.node_cpu, strict=True)]
    load = [max(1e-6, c - rate * window) for c, rate in zip(cpu, idle, strict=True)]
    published = [a - b for a, b in zip(after.node_publishes, before.node_publishes, strict=True)]
    reads = [a - b for a, b in zip(after.node_reads, before.node_reads, strict=True)]
    events = max(1, sum(published))
    busiest = max(range(len(load)), key=load.__getitem__)
    return {
        "node_reads": reads,
        "busiest_share": published[busiest] / events,
        "busiest_events_per_read": published[busiest] / max(1, reads[busiest]),
        "node_publishes": published,
        "node_cpu_s": cpu,
        "node_idle_ms_per_s": [1000 * rate for rate in idle],
        "published": sum(published),
        "us_per_event": 1e6 * max(load) / events,
        "us_per_event_raw": 1e6 * max(cpu) / events,
        "capacity_per_s": events / max(load),
        "capacity_raw_per_s": events / max(cpu),
    }


async def idle_rates(nodes: list[int], seconds: float = 1.0) -> list[float]:
    """Each node's CPU seconds per second while nothing is published."""
    before = await snapshot(nodes)
    await trio.sleep(seconds)
    after = await snapshot(nodes)
    window = after.at - before.at
    return [(a - b) / window for a, b in zip(after.node_cpu, before.node_cpu, strict=True)]


async def subscriber_backlog(nodes: list[int]) -> list[int]:
    """Bytes each node holds for its subscribers, not yet written to their sockets
    (``CLIENT LIST``: ``omem`` plus ``obl`` of the clients with subscriptions): the
    deliveries Redis itself is behind with."""
    held = []
    for port in nodes:
        async with coredis.Redis(host="127.0.0.1", port=port, decode_responses=True) as node:
            listing = await node.client_list()
        total = 0
        for client in listing:
            fields: dict[str, object] = dict(client)
            if int(str(fields.get("sub", 0))) or int(str(fields.get("ssub", 0))):
                total += int(str(fields.get("omem", 0))) + int(str(fields.get("obl", 0)))
        held.append(total)
    return held
