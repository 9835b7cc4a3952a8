"""The embedded broker: pub/sub between the sessions of one process.

The default for ``wsroute run`` and for tests. Several apps (or simulated processes)
may share one ``MemoryBroker`` in one trio run and see each other's broadcasts.

History lives in the broker object: a bounded ring per topic, timed by trio's clock
(so tests may jump it), with an epoch that is new for every ``MemoryBroker``.
"""

from __future__ import annotations

import contextlib
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from .._errors import BrokerClosed
from .._history import History, Position, new_epoch
from ._base import Broker, BrokerMessage, BrokerSession, HistoryPage, StateListener

#: Idle topics whose history is looked at for expiry on each publish.
_SWEEP = 2


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
        # Topics with history, least recently published first (for expiry).
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        # Presence: topic -> member -> (node, entry, leave event); node -> when its
        # heartbeat ends.
        self._present: dict[str, dict[str, tuple[str, bytes, bytes | None]]] = {}
        self._nodes: dict[str, float] = {}
        self._node_topics: dict[str, Counter[str]] = {}

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

    def _uncount(self, node: str, topic: str) -> None:
        counts = self._node_topics.get(node)
        if counts is not None:
            counts[topic] -= 1
            if counts[topic] <= 0:
                del counts[topic]
                if not counts:
                    del self._node_topics[node]

    def _kept_for(self, topic: str, history: History) -> _Kept:
        """``topic``'s history, made anew when missing or idle past ``meta_ttl``."""
        now = trio.current_time()
        kept = self._kept.get(topic)
        if kept is None or kept.last + kept.history.meta_ttl <= now:
            kept = self._kept[topic] = _Kept(history, now)
        elif kept.history != history:
            kept.resize(history)
        self._kept.move_to_end(topic)
        for _ in range(_SWEEP):  # forget topics idle past their meta_ttl, a few at a time
            oldest_topic, oldest = next(iter(self._kept.items()))
            if oldest is kept or oldest.last + oldest.history.meta_ttl > now:
                break
            del self._kept[oldest_topic]
        return kept


class _Kept:
    """One topic's history: its epoch, its last offset and its newest messages."""

    __slots__ = ("entries", "epoch", "history", "last", "lock", "offset")

    def __init__(self, history: History, now: float) -> None:
        self.history = history
        self.epoch = new_epoch()
        self.offset = 0
        self.last = now  # when last published (or created)
        self.entries: deque[tuple[int, float, bytes]] = deque(maxlen=history.size)
        # Held from numbering a message to handing it to every subscriber, so that
        # each subscriber receives the topic's messages in offset order.
        self.lock = trio.Lock()

    def resize(self, history: History) -> None:
        self.history = history
        self.entries = deque(self.entries, maxlen=history.size)

    def expire(self, now: float) -> None:
        entries = self.entries
        cutoff = now - self.history.ttl
        while entries and entries[0][1] <= cutoff:
            entries.popleft()


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
        await self._deliver(BrokerMessage(topic, data))

    async def _deliver(self, message: BrokerMessage) -> None:
        for session in list(self._broker._subscribers.get(message.topic, ())):
            # A session that closed while we published has nobody left to reach.
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await session._send.send(message)

    keeps_history = True

    async def publish_kept(self, topic: str, data: bytes, history: History) -> Position:
        self._check_open()
        kept = self._broker._kept_for(topic, history)
        async with kept.lock:
            now = trio.current_time()
            kept.expire(now)
            kept.offset += 1
            kept.last = now
            kept.entries.append((kept.offset, now, data))
            position = Position(kept.offset, kept.epoch)
            await self._deliver(BrokerMessage(topic, data, position))
        return position

    async def read_history(
        self, topic: str, history: History, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        self._check_open()
        await trio.lowlevel.checkpoint()
        kept = self._broker._kept_for(topic, history)
        kept.expire(trio.current_time())
        entries = [entry for entry in kept.entries if since is None or entry[0] > since]
        if limit is not None:
            entries = entries[:limit] if since is not None else entries[-limit:] if limit else []
        epoch = kept.epoch
        messages = [
            BrokerMessage(topic, data, Position(offset, epoch)) for offset, _, data in entries
        ]
        return HistoryPage(Position(kept.offset, epoch), messages)

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

    # -- presence: in the broker object, timed by trio's clock -------------------------

    keeps_presence = True
    # Each change and its events happen with no checkpoint between them, and the
    # events are delivered shielded: a caller cancelled once the change is made (its
    # process ending) still has them delivered.
    publishes_presence_events = True

    async def _announce(self, events: list[BrokerMessage]) -> None:
        with trio.CancelScope(shield=True):
            for event in events:
                await self._deliver(event)

    async def presence_add(
        self,
        topic: str,
        member: str,
        node: str,
        entry: bytes,
        *,
        join: bytes | None = None,
        leave: bytes | None = None,
    ) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        broker = self._broker
        members = broker._present.setdefault(topic, {})
        previous = members.get(member)
        if previous is not None:
            broker._uncount(previous[0], topic)
        members[member] = (node, entry, leave)
        broker._node_topics.setdefault(node, Counter())[topic] += 1
        if previous is None and join is not None:
            await self._announce([BrokerMessage(topic, join)])

    async def presence_remove(self, topic: str, member: str, node: str) -> bool:
        self._check_open()
        await trio.lowlevel.cancel_shielded_checkpoint()  # clean-up: finishes when cancelled
        broker = self._broker
        members = broker._present.get(topic)
        if members is None or member not in members:
            return False
        owner, _, leave = members.pop(member)
        if not members:
            del broker._present[topic]
        broker._uncount(owner, topic)
        if leave is not None:
            await self._announce([BrokerMessage(topic, leave)])
        return True

    async def presence_list(self, topic: str) -> list[bytes]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        broker = self._broker
        now = trio.current_time()
        return [
            entry
            for node, entry, _ in broker._present.get(topic, {}).values()
            if broker._nodes.get(node, -1.0) > now
        ]

    async def presence_heartbeat(self, node: str, ttl: float) -> bool:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        alive = self._broker._nodes.get(node, -1.0) > now
        self._broker._nodes[node] = now + ttl
        return alive

    async def presence_sweep(self) -> list[tuple[str, bytes]]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        broker = self._broker
        now = trio.current_time()
        removed = []
        leaves = []
        for node in [node for node, until in broker._nodes.items() if until <= now]:
            del broker._nodes[node]
            for topic in broker._node_topics.pop(node, Counter()):
                members = broker._present.get(topic, {})
                for member in [m for m, (owner, _, _) in members.items() if owner == node]:
                    _, entry, leave = members.pop(member)
                    removed.append((topic, entry))
                    if leave is not None:
                        leaves.append(BrokerMessage(topic, leave))
                if not members:
                    broker._present.pop(topic, None)
        await self._announce(leaves)
        return removed

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
