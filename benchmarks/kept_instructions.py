"""The process's instructions per ``publish`` and per ``publish_kept`` on the Redis
broker, counted by valgrind: what a kept publish costs the publishing process, apart
from Redis's time (``kept_script.py``) and from the VM's drifting speed.

    .venv/bin/python benchmarks/kept_instructions.py [--publishes 1600,4800] [--tasks 16]

For each kind, a child process (under ``valgrind --tool=callgrind``) publishes the
smaller and then, in another run, the larger number of events from ``--tasks``
tasks of one session, each to its own topic (``History(size=1000, ttl=300)`` for the
kept ones), to a private redis-server; the difference of the two runs' totals,
divided by the difference of the counts, is the cost of one publish: start-up and
imports cancel out. How often the event loop turns depends on timing, so the figures
move by a few % between runs: compare several. Needs valgrind; takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import sys
import orjson
import trio
from redis_fanout import redis_server
from wsroute import History
from wsroute.brokers import RedisBroker

kept, count, tasks = sys.argv[1] == "kept", int(sys.argv[2]), int(sys.argv[3])
HISTORY = History(size=1000, ttl=300)
PAYLOAD = orjson.dumps({"type": "say", "topic": "room:1", "data": {"text": "x" * 64}})


async def main() -> None:
    async with redis_server() as (port, _):
        async with RedisBroker(f"redis://127.0.0.1:{port}").connect() as session:

            async def publish(topic: str) -> None:
                for _ in range(count // tasks):
                    if kept:
                        await session.publish_kept(topic, PAYLOAD, HISTORY)
                    else:
                        await session.publish(topic, PAYLOAD)

            async with trio.open_nursery() as nursery:
                for n in range(tasks):
                    nursery.start_soon(publish, f"room:{n}")


trio.run(main)
"""


def instructions(kind: str, count: int, tasks: int) -> int:
    """Every instruction of one child run."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        paths = [str(HERE), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        run = subprocess.run(
            [*valgrind, sys.executable, "-c", CHILD, kind, str(count), str(tasks)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"Collected : (\d+)", run.stderr)
        if found is None:
            raise RuntimeError(f"no count from valgrind: {run.stderr[-500:]}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishes", default="1600,4800", help="the two counts (1600,4800)")
    parser.add_argument("--tasks", type=int, default=16, help="publishing tasks (16)")
    args = parser.parse_args()
    low, high = (int(n) for n in args.publishes.split(","))
    per = {}
    for kind in ("plain", "kept"):
        totals = [instructions(kind, n, args.tasks) for n in (low, high)]
        per[kind] = (totals[1] - totals[0]) / (high - low)
        print(f"{kind}: {per[kind]:,.0f} instructions per publish", flush=True)
    print(f"kept / plain: {per['kept'] / per['plain']:.3f}")


if __name__ == "__main__":
    main()
