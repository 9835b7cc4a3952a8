"""The embedded broker: pub/sub between the sessions of one process.

The default for ``wsroute run`` and for tests. Several apps (or simulated processes)
may share one ``MemoryBroker`` in one trio run and see each other's broadcasts.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from .._errors import BrokerClosed
from ._base import Broker, BrokerMessage, BrokerSession, StateListener


class MemoryBroker(Broker):
    """In-process pub/sub.

    Args:
        backlog: the most messages a session holds for its consumer. A publisher to
            a session whose backlog is full waits for room (backpressure), so memory
            stays bounded and nothing is dropped. wsroute's consumer never blocks on
            a client, so this wait only happens when the process is saturated.
    """

    def __init__(self, *, backlog: int = 4096) -> None:
        if backlog < 1:
            raise ValueError("backlog must be at least 1")
        self.backlog = backlog
        self._subscribers: dict[str, set[_MemorySession]] = {}

    def describe(self) -> str:
        return "memory://"

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        # In-process: never disconnected, so on_state is never called.
        session = _MemorySession(self)
        try:
            yield session
        finally:
            session._close()


class _MemorySession(BrokerSession):
    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._counts: Counter[str] = Counter()
        self._send, self._receive = trio.open_memory_channel[BrokerMessage](broker.backlog)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("the memory broker session is closed")

    async def publish(self, topic: str, data: bytes) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        message = BrokerMessage(topic, data)
        for session in list(self._broker._subscribers.get(topic, ())):
            # A session that closed while we published has nobody left to reach.
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await session._send.send(message)

    # Nothing here waits for long: a connection's subscriptions need no cancel scope.
    subscribe_may_wait = False

    async def subscribe(self, topic: str) -> None:
        await self.subscribe_many((topic,))

    async def unsubscribe(self, topic: str) -> None:
        await self.unsubscribe_many((topic,))

    async def subscribe_many(self, topics: Sequence[str]) -> None:
        # One checkpoint for all: a connection joins two or three topics at once, and
        # each trip through trio's scheduler costs about 8% of a connect cycle.
        self._check_open()
        await trio.lowlevel.checkpoint()
        for topic in topics:
            self._counts[topic] += 1
            if self._counts[topic] == 1:
                self._broker._subscribers.setdefault(topic, set()).add(self)

    async def unsubscribe_many(self, topics: Sequence[str]) -> None:
        self._check_open()
        # A schedule point but not a cancellation point: leaving a topic is clean-up,
        # which a cancelled connection must still finish.
        await trio.lowlevel.cancel_shielded_checkpoint()
        for topic in topics:
            if self._counts[topic] <= 0:
                continue
            self._counts[topic] -= 1
            if self._counts[topic] == 0:
                del self._counts[topic]
                self._drop(topic)

    def _drop(self, topic: str) -> None:
        members = self._broker._subscribers.get(topic)
        if members is not None:
            members.discard(self)
            if not members:
                del self._broker._subscribers[topic]

    async def __anext__(self) -> BrokerMessage:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for topic in list(self._counts):
            self._drop(topic)
        self._counts.clear()
        self._send.close()
        self._receive.close()
