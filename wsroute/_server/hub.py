"""Local fan-out: which connections of this process hear which topic.

The hub subscribes a topic on the broker when its first local connection joins and
unsubscribes when the last one leaves, so a process only receives traffic for the
topics it hosts; joining, with its broker subscription and recovery, is ``joining``.
Messages from the broker are decoded once and appended to every member's outbox
without waiting; the pump never blocks on a client. Messages that skip their sender
or carry control orders are described in ``_addressing``.

Events to topics with history (``App(history=...)``) are published with
``publish_kept`` and arrive with their position; a connection that presented a
position for a topic it joins is recovered first (``recovery``); when this process
loses the broker, its connections catch up once it is back (``catchup``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from time import perf_counter
from typing import TYPE_CHECKING

import trio

from .._errors import BrokerError, HistoryUnsupported
from .._history import History, Position
from .._metrics import Metrics
from .._topics import TopicRules
from .addressing import CONTROL, decode_control
from .catchup import Catchup
from .instruments import Instruments
from .joining import Joins, Member, Subscribing
from .presence import PresenceKeeper
from .recovery import Held, Recipient, event_frame

if TYPE_CHECKING:
    from ..brokers import BrokerSession, HistoryPage

logger = logging.getLogger("wsroute")


class Hub:
    """The fan-out of one serving: its tables of who hears which topic (shared with
    ``Joins`` and ``Catchup``), publishing, and delivering what the broker yields."""

    __slots__ = (
        "_broker",
        "_held",
        "_history",
        "_joins",
        "_last",
        "_members",
        "_publish_seconds",
        "_subscribing",
        "catchup",
        "events",
        "presence",
    )

    def __init__(
        self,
        broker: BrokerSession,
        history: TopicRules[History] | None = None,
        *,
        hold_limit: int = 1024,
        presence: PresenceKeeper | None = None,
        instruments: Instruments | None = None,
    ) -> None:
        self._broker = broker
        if instruments is None:
            instruments = Instruments(Metrics())
        self._publish_seconds = instruments.broker_publish_seconds
        #: Events queued for connections (``wsroute_messages_out_total{kind="event"}``).
        self.events = instruments.events
        #: Presence, for apps that have it (``App(presence=...)``).
        self.presence = presence
        self._members: dict[str, set[Member]] = {}
        self._history: TopicRules[History] = history if history is not None else TopicRules(())
        # Connections being recovered, per topic: their live events are held.
        self._held: dict[str, dict[Recipient, Held]] = {}
        # The last position delivered, per hosted topic with history.
        self._last: dict[str, Position] = {}
        #: What the members missed while this process had lost the broker.
        self.catchup = Catchup(
            broker, self._history, self._members, self._held, self._last, hold_limit
        )
        # Topics whose broker subscription is on its way, or failed while the topic
        # still has members (who then subscribe it again).
        self._subscribing: dict[str, Subscribing] = {}
        self._joins = Joins(
            broker,
            self._history,
            self._members,
            self._held,
            self._last,
            self._subscribing,
            self.catchup,
            hold_limit,
            presence,
        )

    @property
    def subscribe_may_wait(self) -> bool:
        """Whether joining or leaving a topic may wait (see BrokerSession)."""
        return self._broker.subscribe_may_wait

    def subscribers(self, topic: str) -> int:
        """How many local connections are subscribed to ``topic``."""
        return len(self._members.get(topic, ()))

    async def subscribe(self, conn: Member, topic: str) -> None:
        await self.join(conn, (topic,))

    async def join(self, conn: Member, topics: Sequence[str]) -> None:
        """Subscribe ``conn`` to ``topics``, and the broker to those this process did
        not host yet, in one call (``Joins.join``). If the broker fails, ``conn``
        joins none of them.

        Raises:
            ValueError: a topic is not a non-empty string.
            BrokerError: the broker refused.
        """
        await self._joins.join(conn, topics)

    async def unsubscribe(self, conn: Member, topic: str) -> None:
        if topic in conn._topics:
            conn._topics.discard(topic)
            if self._joins.forget(conn, topic):
                await self._broker.unsubscribe(topic)
            else:
                await trio.lowlevel.checkpoint()
            if self.presence is not None:
                await self.presence.remove(topic, conn.id)
            return
        await trio.lowlevel.checkpoint()

    async def leave(self, conn: Member) -> None:
        """Unsubscribe ``conn`` from everything; used when it ends, so never raises."""
        emptied = []
        for topic in conn._topics:
            if self._joins.forget(conn, topic):
                emptied.append(topic)
        keeper = self.presence
        present = [t for t in conn._topics if keeper.applies(t)] if keeper is not None else ()
        conn._topics.clear()
        if emptied:
            try:
                await self._broker.unsubscribe_many(emptied)
            except BrokerError as exc:
                logger.warning("could not unsubscribe topics %r from the broker: %s", emptied, exc)
        for topic in present:
            assert keeper is not None
            await keeper.remove(topic, conn.id)

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` as it is (control orders)."""
        start = perf_counter()
        await self._broker.publish(topic, data)
        self._publish_seconds.observe(perf_counter() - start)

    async def publish_event(self, topic: str, data: bytes) -> None:
        """Publish an event (``encode_event``), kept in history if its topic has one."""
        history = self._history.get(topic) if self._history else None
        start = perf_counter()
        if history is None:
            await self._broker.publish(topic, data)
        else:
            await self._broker.publish_kept(topic, data, history)
        self._publish_seconds.observe(perf_counter() - start)

    async def read_history(
        self, topic: str, *, since: int | None, limit: int | None
    ) -> HistoryPage:
        """What the broker keeps of ``topic`` (see ``BrokerSession.read_history``).

        Raises:
            HistoryUnsupported: the topic has no history.
            BrokerError: the broker could not be read.
        """
        history = self._history.get(topic)
        if history is None:
            patterns = ", ".join(map(repr, self._history.patterns)) or "none"
            raise HistoryUnsupported(
                f"topic {topic!r} has no history: it matches none of the patterns of"
                f" App(history=...) ({patterns})"
            )
        return await self._broker.read_history(topic, history, since=since, limit=limit)

    def deliver(self, topic: str, data: bytes, position: Position | None = None) -> None:
        members = self._members.get(topic)
        if not members:
            return
        if not data:  # the broker dropped the topic's events up to ``position``
            self._dropped(topic, position)
            return
        if data[0] == CONTROL:
            try:
                control = decode_control(data)
            except ValueError as exc:
                logger.warning("dropped a message on topic %r: %s", topic, exc)
                return
            for conn in list(members):
                conn._control(control)
            return
        if position is not None:
            last = self._last.get(topic)
            if last is not None:
                # Offsets count one by one from 1 in each epoch. One not ahead of the
                # last delivered is a copy of what the members got, from history or
                # live (a cluster's redirected publish arrives late); one further
                # ahead means that live events never reached this process.
                if position.epoch == last.epoch:
                    if position.offset <= last.offset:
                        return
                    gap = position.offset > last.offset + 1
                else:
                    gap = position.offset > 1
                if gap:
                    until = Position(position.offset - 1, position.epoch)
                    self.catchup.skipped(topic, last, until)
            self._last[topic] = position
        try:
            sender, frame = event_frame(data, position)  # framed once for every member
        except (ValueError, TypeError) as exc:  # only a bug elsewhere could send one
            logger.warning("dropped an event on topic %r that does not decode: %s", topic, exc)
            return
        held = self._held.get(topic) if self._held else None
        if held is None and sender is None:
            for conn in members:
                conn._push(frame)
            self.events.value += len(members)
            return
        pushed = 0
        for conn in members:
            skipped = conn.id == sender
            # Events without a position (none of history) are not recovered: they pass.
            hold = held.get(conn) if held is not None else None
            if hold is not None and position is not None:
                if hold.floor is None:
                    hold.add(position, None if skipped else frame)
                    continue
                if not hold.passes(position):
                    continue  # the connection got it from history
                self._joins.unfloor(topic, conn, hold)
            if not skipped:
                conn._push(frame)
                pushed += 1
        self.events.value += pushed

    def _dropped(self, topic: str, position: Position | None) -> None:
        """The broker session dropped ``topic``'s events up to ``position``."""
        last = self._last.get(topic) if position is not None else None
        if last is None or position is None:
            return
        if position.epoch != last.epoch or position.offset > last.offset:
            self.catchup.skipped(topic, last, position)

    async def pump(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver everything the broker session yields until it ends."""
        async with trio.open_nursery() as repairs:
            # Live gaps are filled from history here, for as long as the hub delivers.
            self.catchup.repairs = repairs
            try:
                task_status.started()
                async for message in self._broker:
                    self.deliver(message.topic, message.data, message.position)
            finally:
                self.catchup.repairs = None
                repairs.cancel_scope.cancel()
