"""Redis's own time per kept publish, for the keep script of two revisions. A
benchmark, not a test.

Each revision's ``PUBLISH_KEPT`` (``wsroute/brokers/redis/kept.py``) runs on one
topic of a private redis-server, in steady state: ``redis-benchmark`` calls it
``--calls`` times, pipelined, and ``INFO commandstats`` gives Redis's µs per
``EVALSHA`` (``usec_per_call``), which the load of other processes on the machine
hardly moves. The revisions alternate, ``--rounds`` times. A script that takes what
the session knows of the topic (ARGV 7 to 9, or in its packed context) gets what its
first call returned, as a session would.

Usage (from the repository root; the figures are in docs/performance.md)::

    .venv/bin/python benchmarks/kept_script.py --before c52df7d [--after HEAD]
        [--calls 100000] [--rounds 5]

Without ``--after``, the working tree is the second revision.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
from redis_fanout import find_redis_server, free_port

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["wsroute:{room:1}:s", "wsroute:{room:1}:m"]
DATA = '{"type":"say","topic":"room:1","data":{"text":"' + "x" * 64 + '"}}'
# seed, data, size, ttl ms, meta_ttl ms, channel: History(size=1000, ttl=300).
ARGS = ["seed1234", DATA, "1000", "300000", "2592000000", "wsroute:room:1"]


def script_of(tree: Path) -> str:
    """The keep script of the wsroute package in ``tree``."""
    code = (
        "import sys; from wsroute.brokers.redis import kept; sys.stdout.write(kept._PUBLISH_KEPT)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True
    ).stdout


def checkout(revision: str, into: Path) -> Path:
    into.mkdir()
    archive = subprocess.run(
        ["git", "archive", revision, "wsroute"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


class Redis:
    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self, *args: str | bytes) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, check=True
        ).stdout.decode(errors="replace")


def packed(parts: list[str]) -> bytes:
    """The context argument of a keep script that unpacks one (``cmsgpack``)."""
    return b"".join(msgpack.packb(part.encode(), use_bin_type=False) for part in parts)


def usec_per_call(redis: Redis, sha: str, script: str, calls: int) -> float:
    redis("FLUSHALL")
    args: list[str | bytes] = list(ARGS)
    if "cmsgpack" in script:  # data, then one packed argument (seed ... deadlines)
        seed, data, *bounds = ARGS
        learnt = redis("EVALSHA", sha, "2", *KEYS, data, packed([seed, *bounds, "", "", ""]))
        args = [data, packed([seed, *bounds, *learnt.split()[1:4]])]
    elif "ARGV[7]" in script:  # it takes what the session learnt from its last call
        learnt = redis("EVALSHA", sha, "2", *KEYS, *ARGS, "", "", "").split()
        args += learnt[1:4]
    redis("CONFIG", "RESETSTAT")
    command = ["EVALSHA", sha, "2", *KEYS, *args]
    benchmark = ["redis-benchmark", "-p", str(redis.port), "-n", str(calls), "-P", "32", "-c", "4"]
    subprocess.run([*benchmark, "-q", *command], capture_output=True, check=True)
    stats = redis("INFO", "commandstats")
    found = re.search(r"cmdstat_evalsha:calls=(\d+),usec=\d+,usec_per_call=([\d.]+)", stats)
    assert found and int(found.group(1)) == calls, stats
    assert "failed_calls=0" in stats.split("cmdstat_evalsha:")[1].splitlines()[0], stats
    return float(found.group(2))


def main(args: argparse.Namespace) -> None:
    if shutil.which("redis-benchmark") is None or shutil.which("redis-cli") is None:
        sys.exit("needs redis-benchmark and redis-cli (apt-get install redis-tools)")
    with tempfile.TemporaryDirectory() as temp:
        trees = {args.before: checkout(args.before, Path(temp) / "before")}
        if args.after:
            trees[args.after] = checkout(args.after, Path(temp) / "after")
        else:
            trees["working tree"] = ROOT
        scripts = {name: script_of(tree) for name, tree in trees.items()}
        port = free_port()
        server = subprocess.Popen(
            [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        try:
            redis = Redis(port)
            for _ in range(200):
                if subprocess.run(
                    ["redis-cli", "-p", str(port), "PING"], capture_output=True
                ).stdout:
                    break
                time.sleep(0.05)
            shas = {
                name: redis("SCRIPT", "LOAD", script).strip() for name, script in scripts.items()
            }
            found: dict[str, list[float]] = {name: [] for name in scripts}
            for _ in range(args.rounds):
                for name in scripts:
                    found[name].append(usec_per_call(redis, shas[name], scripts[name], args.calls))
        finally:
            server.kill()
            server.wait()
    for name, values in found.items():
        runs = " ".join(f"{value:.2f}" for value in values)
        print(f"{name:14} µs per EVALSHA {runs}  median {statistics.median(values):.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a git revision")
    parser.add_argument("--after", help="a git revision (default: the working tree)")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
