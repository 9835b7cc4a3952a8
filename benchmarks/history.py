"""What history costs and how fast recovery is. A benchmark, not a test.

1. **publish**: ``publish`` against ``publish_kept`` (``History(size=1000, ttl=300)``)
   from ``--tasks`` concurrent tasks for ``--seconds``, on the memory broker and on a
   private redis-server; then ``app.publish`` (the event encoded, as a broadcast
   does) to topics without and with history. Reported: publishes per second, and
   history's cost.
2. **broadcast acks**, on Redis only: a ``wsroute run`` process serving ``--clients``
   WebSocket clients that each keep ``--window`` broadcasts in flight (a broadcast
   is acknowledged once Redis took its event), without and with history on every
   topic: what an app sees end to end, requests decoded and events encoded. Also
   the CPU time each server and Redis spent per acknowledged broadcast
   (``/proc/PID/task/*/schedstat``): a process's CPU time hardly moves with what else
   runs on the machine, where its throughput does, and wherever the server's CPU is
   the bound (Redis on a host of its own, as in production) its throughput is the
   inverse of its CPU time per broadcast.
3. **recovery**: an app served on 127.0.0.1 (each broker), a client (trio-websocket)
   that joins a room, sees one event and leaves; ``--missed`` events are published;
   the client comes back with its position and joins again. Reported: the time from
   sending the join to the ``wsroute.recovery`` event, every missed event received in
   order, over a real socket.

With Redis, part 1 also reports Redis's own time per call of the publishes
(``INFO commandstats``: ``usec_per_call`` of ``PUBLISH`` and of ``EVALSHA``, the
keep script), which the load of other processes on the machine hardly moves.
Parts 1 and 2 measure ``--rounds`` times, without and with history in turn (each
round starting with the other one; in part 2 both servers run throughout), and report
the median rate of each and the median of the rounds' costs with every round's: on a
shared machine whose speed drifts, one measurement each was not enough to read a cost
of a few percent. ``--only publish`` runs part 1 alone, ``--only acks`` part 2.

``--pin`` keeps the measured process (part 1: this one, which publishes; part 2: the
servers) on the first core, and Redis and the clients on the others: as in
production, where Redis has a host of its own, Redis's CPU no longer competes with
the process whose cost is measured.

Usage (from the repository root; the figures are in docs/performance.md)::

    .venv/bin/python benchmarks/history.py [--tasks 16] [--seconds 3] [--rounds 5] [--missed 10000]
        [--clients 32] [--window 8] [--only publish|acks] [--pin]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import quote

import coredis
import orjson
import trio
import trio_websocket
from _cpucap import process_cpu
from redis_fanout import acks_within, clients, redis_server, wsroute_processes

from wsroute import App, Connection, History
from wsroute.brokers import Broker, MemoryBroker, RedisBroker
from wsroute.testing import open_app

KEPT = History(size=1000, ttl=300)


async def publish_rate(broker: Broker, kept: bool, tasks: int, seconds: float) -> float:
    """Publishes per second to topics nobody hosts, ``tasks`` at a time."""
    done = 0
    payload = orjson.dumps({"type": "say", "topic": "room:1", "data": {"text": "x" * 64}})

    async def publish(session: Any, topic: str, deadline: float) -> None:
        nonlocal done
        while trio.current_time() < deadline:
            if kept:
                await session.publish_kept(topic, payload, KEPT)
            else:
                await session.publish(topic, payload)
            done += 1

    async with broker.connect() as session:
        deadline = trio.current_time() + seconds
        async with trio.open_nursery() as nursery:
            for n in range(tasks):
                nursery.start_soon(publish, session, f"room:{n}", deadline)
    return done / seconds


async def app_publish_rate(broker: Broker, kept: bool, tasks: int, seconds: float) -> float:
    """``app.publish`` per second (encoding included), ``tasks`` at a time, to topics
    with history (``kept``) or without: what a broadcasting app sees."""
    app = App(broker=broker, history={"room:*": KEPT} if kept else None)
    done = 0

    async def publish(topic: str, deadline: float) -> None:
        nonlocal done
        while trio.current_time() < deadline:
            await app.publish(topic, "say", {"text": "x" * 64})
            done += 1

    async with open_app(app):
        deadline = trio.current_time() + seconds
        async with trio.open_nursery() as nursery:
            for n in range(tasks):
                nursery.start_soon(publish, f"room:{n}", deadline)
    return done / seconds


def history_app(broker: Broker, size: int) -> App:
    app = App(broker=broker, history={"room:*": History(size=size, ttl=600)}, outbox_size=4096)

    @app.direct("join")
    async def join(room: str, conn: Connection) -> None:
        await conn.subscribe(f"room:{room}")

    return app


async def recovery_time(broker: Broker, missed: int) -> tuple[float, int]:
    """Seconds from the join to the wsroute.recovery event, and events received."""
    app = history_app(broker, missed)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(app.serve, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/"
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message(orjson.dumps({"type": "join", "id": 1, "data": "1"}).decode())
            await ws.get_message()  # the reply
            await app.publish("room:1", "say", 0)
            seen = orjson.loads(await ws.get_message())
        for n in range(1, missed + 1):
            await app.publish("room:1", "say", n)
        position = orjson.dumps({"room:1": [seen["offset"], seen["epoch"]]}).decode()
        async with trio_websocket.open_websocket_url(
            f"{url}?wsroute.recover={quote(position)}", message_queue_size=missed + 16
        ) as ws:
            start = time.perf_counter()
            await ws.send_message(orjson.dumps({"type": "join", "id": 1, "data": "1"}).decode())
            received = []
            for _ in range(missed + 2):
                message = orjson.loads(await ws.get_message())
                if message["type"] == "wsroute.recovery":
                    elapsed = time.perf_counter() - start
                    assert message["data"]["recovered"], message
                    break
                if message["type"] == "say":
                    received.append(message["data"])
            assert received == list(range(1, missed + 1)), "not every missed event, in order"
        app.shutdown()
        nursery.cancel_scope.cancel()
    return elapsed, len(received)


async def redis_time(port: int, command: str) -> float:
    """Redis's µs per call of ``command`` since the last ``reset_redis_stats``."""
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        stats = await client.info("commandstats")
    return float(stats[f"cmdstat_{command}"]["usec_per_call"])


async def redis_pid(port: int) -> int:
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        info = await client.info("server")
    return int(info["process_id"])


def pin(pid: int, cores: set[int] | None) -> None:
    """Keep ``pid`` (0: this process) on ``cores``, if pinning was asked for."""
    if cores is not None:
        os.sched_setaffinity(pid, cores)


async def reset_redis_stats(port: int) -> None:
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        await client.config_resetstat()


def orders(rounds: int) -> list[tuple[bool, bool]]:
    """Without and with history in turn, each round starting with the other one, so
    that neither always runs first on a machine whose speed drifts."""
    return [(False, True) if n % 2 == 0 else (True, False) for n in range(rounds)]


def summary(costs: list[float]) -> str:
    """The median cost of rounds, with every round's."""
    each = ", ".join(f"{cost:.1f}" for cost in costs)
    return f"cost median {statistics.median(costs):5.1f} % (rounds: {each})"


def cpu_summary(spent: dict[bool, list[float]]) -> str:
    """CPU per acknowledged broadcast without and with history (medians of the rounds),
    and what history adds, per round: where that process bounds throughput, as a
    server does when Redis has a host of its own, its throughput falls by
    ``1 - without / with``."""
    each = [(1 - plain / kept) * 100 for plain, kept in zip(spent[False], spent[True], strict=True)]
    plain, kept = statistics.median(spent[False]), statistics.median(spent[True])
    return f"without {plain:6.1f}  with {kept:6.1f}  {summary(each)}"


async def main(args: argparse.Namespace) -> None:
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {args.tasks} tasks,"
        f" {args.rounds} rounds of {args.seconds:g} s"
    )
    measured: set[int] | None = None
    others: set[int] | None = None
    if args.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            raise SystemExit("--pin needs at least two cores")
        measured, others = {cores[0]}, set(cores[1:])
        print(f"pinned: the measured process on core {cores[0]}, Redis and the rest on {others}")
    async with redis_server() as (redis_port, version):
        print(f"redis-server {version}")
        pin(await redis_pid(redis_port), others)
        pin(0, measured)  # part 1: this process publishes
        brokers: dict[str, Callable[[], AbstractAsyncContextManager[Broker]]] = {
            "memory": _memory,
            "redis": lambda: _redis(redis_port),
        }
        rates = {"publish": publish_rate, "app.publish": app_publish_rate}
        for name, make in (brokers if args.only != "acks" else {}).items():
            for label, rate in rates.items():
                costs, found, redis_us = [], {False: [], True: []}, {False: [], True: []}
                for order in orders(args.rounds):
                    rounds: dict[bool, float] = {}
                    for kept in order:
                        if name == "redis":
                            await reset_redis_stats(redis_port)
                        async with make() as broker:
                            rounds[kept] = await rate(broker, kept, args.tasks, args.seconds)
                        found[kept].append(rounds[kept])
                        if name == "redis":
                            command = "evalsha" if kept else "publish"
                            redis_us[kept].append(await redis_time(redis_port, command))
                    costs.append((1 - rounds[True] / rounds[False]) * 100)
                plain, kept_rate = (statistics.median(found[k]) for k in (False, True))
                in_redis = ""
                if name == "redis":
                    plain_us, kept_us = (statistics.median(redis_us[k]) for k in (False, True))
                    in_redis = f"  Redis µs/call {plain_us:.2f} / {kept_us:.2f}"
                print(
                    f"{label} {name:6} without history {plain:9,.0f}/s  with {kept_rate:9,.0f}/s"
                    f"  {summary(costs)}{in_redis}"
                )
        if args.only == "publish":
            return
        # Both servers run throughout; the clients load one, then the other, in turn.
        url = f"redis://127.0.0.1:{redis_port}"
        pids: list[int] = []
        async with (
            wsroute_processes(url, 1, history=False, pids=pids) as plain_ports,
            wsroute_processes(url, 1, history=True, pids=pids) as kept_ports,
        ):
            for pid in pids:  # part 2: the servers are measured, this process is the clients
                pin(pid, measured)
            pin(0, others)
            ports = {False: plain_ports, True: kept_ports}
            servers = {False: pids[0], True: pids[1]}
            redis = await redis_pid(redis_port)
            costs, acks = [], {False: [], True: []}
            cpu: dict[str, dict[bool, list[float]]] = {
                "server": {False: [], True: []},
                "redis": {False: [], True: []},
            }
            for order in orders(args.rounds):
                rounds = {}
                for kept in order:
                    async with clients(ports[kept], args.clients) as connections:
                        spent = process_cpu(servers[kept]), process_cpu(redis)
                        acked, elapsed = await acks_within(connections, args.window, args.seconds)
                        server_s, redis_s = (
                            process_cpu(pid) - before
                            for pid, before in zip((servers[kept], redis), spent, strict=True)
                        )
                    rounds[kept] = acked / elapsed
                    acks[kept].append(rounds[kept])
                    cpu["server"][kept].append(server_s / acked * 1e6)
                    cpu["redis"][kept].append(redis_s / acked * 1e6)
                costs.append((1 - rounds[True] / rounds[False]) * 100)
        print(
            f"broadcast acks redis ({args.clients} clients, {args.window} in flight each)"
            f" without history {statistics.median(acks[False]):9,.0f}/s"
            f"  with {statistics.median(acks[True]):9,.0f}/s  {summary(costs)}"
        )
        pooled = (1 - sum(acks[True]) / sum(acks[False])) * 100
        print(f"  all rounds together: cost {pooled:.1f} %")
        for name, spent_us in cpu.items():
            print(f"  {name} CPU µs per ack: {cpu_summary(spent_us)}")
        for name, make in (brokers if args.only is None else {}).items():
            async with make() as broker:
                elapsed, count = await recovery_time(broker, args.missed)
            print(f"recovery {name:6} {count:,} missed events in {elapsed * 1000:6.0f} ms")


@asynccontextmanager
async def _memory() -> AsyncIterator[Broker]:
    yield MemoryBroker()


@asynccontextmanager
async def _redis(port: int) -> AsyncIterator[Broker]:
    broker = RedisBroker(f"redis://127.0.0.1:{port}/0")
    yield broker


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--missed", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--only", choices=["publish", "acks"], help="run part 1 or 2 alone")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the measured process (part 1: this one; part 2: the servers) on one core,"
        " Redis and the clients on the others, as when Redis has a host of its own",
    )
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_args())
