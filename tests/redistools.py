"""What the Redis broker's tests share: a state listener to wait on, bounded waits, and
a broker that notices trouble fast. Real time throughout (real sockets)."""

from __future__ import annotations

from typing import Any

import trio

from wsroute.brokers import BrokerMessage, BrokerSession, BrokerState, RedisBroker

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


def quick(url: str, **options: Any) -> RedisBroker:
    """A broker that notices trouble fast, for outage tests."""
    options.setdefault("timeout", 0.5)
    options.setdefault("health_check_interval", 0.3)
    options.setdefault("publish_timeout", 0.5)
    return RedisBroker(url, **options)
