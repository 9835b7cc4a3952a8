"""The broker interface: topics and bytes, nothing about envelopes or connections.

A :class:`Broker` is configuration; ``connect()`` opens a :class:`BrokerSession` for
one running app (one process). The runtime encodes each event once, publishes its
bytes, and fans out what the session yields to local connections. Contract every
implementation keeps (checked by ``wsroute.testing.check_broker``):

- a published message reaches every session subscribed to its topic, including the
  publisher's own, in publish order per publisher and topic (at most once);
- ``subscribe``/``unsubscribe`` are refcounted per session: a topic subscribed twice
  needs two unsubscribes;
- messages from one session to another arrive in the order they were published,
  also across topics, unless the session says ``orders_across_topics = False`` (a
  sharded broker, whose topics travel on separate connections): then per topic only;
- publishing to a topic nobody subscribes to is not an error;
- after the session closes, its operations raise :class:`~wsroute.BrokerClosed` and
  its iteration ends;
- what a session buffers for its consumer is bounded by ``backlog`` messages: when
  it is full, publishers wait (backpressure) or the excess is dropped and logged.

A session that keeps history (``keeps_history``) also numbers what is published with
``publish_kept``: each such message gets the next offset of its topic, is kept and
delivered with its position in one atomic step (no subscriber sees a message that a
read of history would not return, nor the other way round), and subscribers receive
a topic's kept messages in offset order.

A session that keeps presence (``keeps_presence``) and says
``publishes_presence_events`` publishes the join and leave events it is given with an
entry in the same atomic step as the addition and the removal (or sweep) they
announce, so that each is published once and none is lost with the process that
caused it.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import NamedTuple

from .._errors import HistoryUnsupported, PresenceUnsupported
from .._history import History, Position


class BrokerState(enum.Enum):
    """Whether a broker session can currently carry messages."""

    #: Connected (again): publishes go through, every subscription is active.
    CONNECTED = "connected"
    #: A gap is possible: messages may be missed on some or all topics, and publishes
    #: to the affected ones fail with BrokerError. One Redis lost affects every topic;
    #: one shard of a Redis Cluster lost affects its topics only, the others go on.
    DISCONNECTED = "disconnected"


#: Called (synchronously, must not block) when a session's state changes.
StateListener = Callable[[BrokerState], None]


class BrokerMessage(NamedTuple):
    """One message delivered by a broker session.

    A session that had to drop messages of a topic with history (its inbound buffer
    overflowed) says so with a message without ``data`` whose ``position`` is that of
    the last one dropped: the app then reads the gap from history (docs/history.md).
    """

    topic: str
    data: bytes
    #: Its place in the topic's history, for a message published with ``publish_kept``.
    position: Position | None = None


class HistoryPage(NamedTuple):
    """What ``BrokerSession.read_history`` returns."""

    #: The topic's latest position when read: the offset of its newest message.
    position: Position
    #: Messages kept, oldest first, each with its ``position``.
    messages: list[BrokerMessage]


class BrokerSession(abc.ABC):
    """One app's attachment to a broker. Iterate it to receive messages."""

    #: Whether ``subscribe`` and ``unsubscribe`` may wait on I/O (a network round
    #: trip). A session whose never do, and whose ``unsubscribe`` is never cancelled
    #: (a cancel-shielded schedule point at most), says False: the runtime then ends
    #: a connection without a shielded scope around its clean-up.
    subscribe_may_wait: bool = True

    @abc.abstractmethod
    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` to every session subscribed to ``topic``.

        Returns once the broker has accepted the message.

        Raises:
            BrokerError: the broker could not take it (``BrokerClosed`` after close).
        """

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start receiving ``topic`` (refcounted)."""

    @abc.abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """Drop one subscription to ``topic``; delivery stops at zero."""

    async def subscribe_many(self, topics: Sequence[str]) -> None:
        """``subscribe`` to each of ``topics``, in order. Every connection joins two or
        three topics at once when it opens: a broker that can do several in one round
        trip (or one checkpoint) should override this.

        Raises:
            BrokerError: as ``subscribe``; the topics subscribed before it stay so.
        """
        for topic in topics:
            await self.subscribe(topic)

    async def unsubscribe_many(self, topics: Sequence[str]) -> None:
        """``unsubscribe`` from each of ``topics``, as a connection that ends does."""
        for topic in topics:
            await self.unsubscribe(topic)

    #: Whether a sequential publisher's messages on different topics arrive in publish
    #: order. A broker that spreads topics over shards keeps order per topic only.
    orders_across_topics: bool = True

    #: Whether ``publish_kept`` and ``read_history`` work. A session that keeps no
    #: history leaves this False; an app with ``history`` then refuses to start.
    keeps_history: bool = False

    async def publish_kept(self, topic: str, data: bytes, history: History) -> Position:
        """Publish ``data`` as ``publish`` does and keep it in ``topic``'s history,
        bounded by ``history``, in one atomic step; subscribers receive it with the
        position returned.

        Raises:
            HistoryUnsupported: the session keeps no history.
            BrokerError: as ``publish``.
        """
        raise HistoryUnsupported(f"{type(self).__name__} keeps no history")

    async def read_history(
        self, topic: str, history: History, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        """What is kept of ``topic``: with ``since``, the messages after that offset,
        oldest first, at most ``limit`` (the oldest of them); without, the newest
        ``limit`` (all kept when ``None``). Messages older than ``history.ttl`` or
        beyond its ``size`` newest are never returned. A topic never published to gets
        an epoch here, at offset 0, so that a client may count from it.

        Raises:
            HistoryUnsupported: the session keeps no history.
            BrokerError: the broker could not be read.
        """
        raise HistoryUnsupported(f"{type(self).__name__} keeps no history")

    #: Whether the presence methods below work. A session that keeps no presence
    #: leaves this False; an app with ``presence`` then refuses to start.
    keeps_presence: bool = False

    #: Whether ``presence_add`` takes ``join`` and ``leave`` payloads and publishes them
    #: itself, each in the same atomic step as the change it announces, so that a
    #: process that dies right after the call loses no event. A session that leaves
    #: this False is never given them: the runtime then publishes the events after
    #: the broker confirmed the change (and loses them if it dies in between).
    publishes_presence_events: bool = False

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
        """Record ``member`` (a connection of the process ``node``) as present on
        ``topic`` with ``entry``; replaces an entry it had there.

        Only a session that says ``publishes_presence_events`` is given ``join`` and
        ``leave``. It publishes ``join`` on ``topic``, as ``publish`` would, in the
        same atomic step as the addition, if the member had no entry there (a
        replaced entry is no join). It keeps ``leave`` with the entry (a replacement
        replaces it, ``None`` drops it) and publishes it on ``topic`` when, and only
        when, the entry is removed: in the same atomic step as the one
        ``presence_remove`` that returns True, or as the sweep that removes it.

        Raises:
            PresenceUnsupported: the session keeps no presence.
            BrokerError: the broker could not take it.
        """
        raise PresenceUnsupported(f"{type(self).__name__} keeps no presence")

    async def presence_remove(self, topic: str, member: str, node: str) -> bool:
        """Remove ``member``'s entry from ``topic``; return whether it was there, so
        that of several removals (the member leaving, a sweep) exactly one says so.

        Raises:
            PresenceUnsupported: the session keeps no presence.
            BrokerError: the broker could not be reached.
        """
        raise PresenceUnsupported(f"{type(self).__name__} keeps no presence")

    async def presence_list(self, topic: str) -> list[bytes]:
        """The entries present on ``topic``, of nodes whose heartbeat has not expired,
        in no particular order.

        Raises:
            PresenceUnsupported: the session keeps no presence.
            BrokerError: the broker could not be read.
        """
        raise PresenceUnsupported(f"{type(self).__name__} keeps no presence")

    async def presence_heartbeat(self, node: str, ttl: float) -> bool:
        """Say that ``node`` is alive for ``ttl`` more seconds; its entries count as
        present until then. Every node beats well within its ``ttl``. Returns whether
        the node was alive until now: False on its first beat, and after its entries
        were swept (it could not beat in time), when it must add its entries again.

        Raises:
            PresenceUnsupported: the session keeps no presence.
            BrokerError: the broker could not take it.
        """
        raise PresenceUnsupported(f"{type(self).__name__} keeps no presence")

    async def presence_sweep(self) -> list[tuple[str, bytes]]:
        """Remove every entry of the nodes whose heartbeat expired (a process that died
        without cleaning up) and forget those nodes; return the ``(topic, entry)`` of
        each entry removed. Atomic: of sessions sweeping at once, across processes,
        each removed entry is returned to exactly one.

        Raises:
            PresenceUnsupported: the session keeps no presence.
            BrokerError: the broker could not be reached.
        """
        raise PresenceUnsupported(f"{type(self).__name__} keeps no presence")

    def __aiter__(self) -> BrokerSession:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> BrokerMessage:
        """The next message for a subscribed topic; ends when the session closes."""


class Broker(abc.ABC):
    """A pub/sub backend. Subclass it, or use :class:`~wsroute.brokers.MemoryBroker`."""

    #: The most messages one session buffers for its consumer.
    backlog: int = 4096

    @abc.abstractmethod
    def connect(
        self, *, on_state: StateListener | None = None
    ) -> AbstractAsyncContextManager[BrokerSession]:
        """Open a session; it is ready to publish and subscribe once entered.

        Args:
            on_state: told when the session loses its connection and when it has
                recovered (resubscribed). A session that cannot recover must raise
                out of its context (so the process fails loudly), never go silent.

        Raises:
            BrokerError: the broker cannot be reached at start.
        """

    def describe(self) -> str:
        """A short description for logs, without credentials."""
        return type(self).__name__
