"""How long presence takes to read on a big topic. A benchmark, not a test.

For each broker (the memory broker, and a private redis-server), ``--members``
entries are put on one topic by one process (``presence_add``, as many connections
joining would), then ``app.presence`` and ``app.presence_stats`` are timed from
another app on the same broker: the median and the worst of ``--reads`` reads.

Usage (from the repository root; the figures are in docs/performance.md)::

    .venv/bin/python benchmarks/presence.py [--members 10000] [--reads 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from redis_fanout import redis_server

from wsroute import App
from wsroute._presence import encode_entry
from wsroute.brokers import Broker, MemoryBroker, RedisBroker
from wsroute.testing import open_app

TOPIC = "room:big"


async def timed(read: Callable[[], Awaitable[Any]], reads: int) -> tuple[float, float]:
    """Median and worst milliseconds of ``reads`` calls of ``read``."""
    times = []
    for _ in range(reads):
        start = time.perf_counter()
        await read()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


async def measure(broker: Broker, members: int, reads: int) -> dict[str, tuple[float, float]]:
    app = App(broker=broker, presence=["room:*"])
    async with open_app(app), broker.connect() as other:
        await other.presence_heartbeat("bench-node", 3600)
        async with trio.open_nursery() as nursery:  # many joins at once, pipelined
            for start in range(0, members, members // 16 or 1):

                async def add(first: int = start) -> None:
                    for n in range(first, min(first + (members // 16 or 1), members)):
                        entry = encode_entry(f"c{n}", f"user{n % (members // 2 or 1)}", {"n": n})
                        await other.presence_add(TOPIC, f"c{n}", "bench-node", entry)

                nursery.start_soon(add)
        listed = await app.presence(TOPIC)
        assert len(listed) == members, len(listed)
        return {
            "presence": await timed(lambda: app.presence(TOPIC), reads),
            "presence_stats": await timed(lambda: app.presence_stats(TOPIC), reads),
        }


async def main(args: argparse.Namespace) -> None:
    print(f"Python {platform.python_version()} on {platform.machine()}, {args.members:,} members")
    async with redis_server() as (redis_port, version):
        print(f"redis-server {version}")
        brokers: dict[str, Callable[[], Broker]] = {
            "memory": MemoryBroker,
            "redis": lambda: RedisBroker(f"redis://127.0.0.1:{redis_port}/0"),
        }
        for name, make in brokers.items():
            figures = await measure(make(), args.members, args.reads)
            for call, (median, worst) in figures.items():
                print(f"{name:6} app.{call:15} median {median:6.1f} ms  worst {worst:6.1f} ms")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=20)
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_args())
