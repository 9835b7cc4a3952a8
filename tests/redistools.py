"""What the Redis broker's tests share: a state listener to wait on, bounded waits, a
broker that notices trouble fast, a relay that cuts a process off from Redis, and
Redis' own count of the commands it ran. Real time throughout (real sockets)."""

from __future__ import annotations

from typing import Any

import trio

from wsroute.brokers import BrokerMessage, BrokerSession, BrokerState, RedisBroker

from .redisproc import RedisServer

#: Upper bound for one expected step (a message, a reconnection).
TIMEOUT = 5.0


class States:
    """An ``on_state`` listener that tests can wait on."""

    def __init__(self) -> None:
        self.seen: list[BrokerState] = []
        self._changed = trio.Event()

    def __call__(self, state: BrokerState) -> None:
        self.seen.append(state)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, state: BrokerState, count: int = 1) -> None:
        with trio.fail_after(TIMEOUT):
            while self.seen.count(state) < count:
                await self._changed.wait()


async def next_message(session: BrokerSession) -> BrokerMessage:
    with trio.fail_after(TIMEOUT):
        return await session.__anext__()


async def wait_until(predicate: Any, what: str) -> None:
    with trio.move_on_after(TIMEOUT):
        while not await predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"{what}: not within {TIMEOUT:g} s")


async def calls(redis: RedisServer, *commands: str) -> dict[str, int]:
    """How many times Redis ran each of ``commands`` (lower case) since its counters
    were last reset (``CONFIG RESETSTAT``), from ``INFO commandstats``; commands run
    by scripts count too."""
    async with redis.client() as client:
        stats = await client.info("commandstats")
    return {command: stats.get(f"cmdstat_{command}", {}).get("calls", 0) for command in commands}


def quick(url: str, **options: Any) -> RedisBroker:
    """A broker that notices trouble fast, for outage tests."""
    options.setdefault("timeout", 0.5)
    options.setdefault("health_check_interval", 0.3)
    options.setdefault("publish_timeout", 0.5)
    return RedisBroker(url, **options)


class Relay:
    """A TCP relay on 127.0.0.1 in front of a redis-server. ``cut`` closes every
    connection through it and refuses new ones until ``mend``: the process behind
    it has lost Redis while others still reach it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.up = True
        self._scopes: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        self.up = False
        for scope in self._scopes:
            scope.cancel()

    def mend(self) -> None:
        self.up = True

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.up:
                return
            try:
                server = await trio.open_tcp_stream("127.0.0.1", self.target)
            except OSError:
                return
            async with server:
                with trio.CancelScope() as scope:
                    self._scopes.add(scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_pipe, client, server, nursery.cancel_scope)
                            nursery.start_soon(_pipe, server, client, nursery.cancel_scope)
                    finally:
                        self._scopes.discard(scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send_all(chunk)
    except trio.BrokenResourceError:
        pass
    both.cancel()  # one side closed: so does the other
