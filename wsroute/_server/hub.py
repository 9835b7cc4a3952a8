"""Local fan-out: which connections of this process hear which topic.

The hub subscribes a topic on the broker when its first local connection joins and
unsubscribes when the last one leaves, so a process only receives traffic for the
topics it hosts. Messages from the broker are decoded once and appended to every
member's outbox without waiting; the pump never blocks on a client. Messages that
skip their sender or carry control orders are described in ``_addressing``.

Events to topics with history (``App(history=...)``) are published with
``publish_kept`` and arrive with their position; a connection that presented a
position for a topic it joins is recovered first (``recovery``); when this process
loses the broker, its connections catch up once it is back (``catchup``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._errors import BrokerError, HistoryUnsupported
from .._history import History, Position
from .._metrics import Metrics
from .._presence import encode_entry
from .._topics import TopicRules
from .._wire.frames import Prepared
from .addressing import CONTROL, Control, decode_control
from .catchup import Catchup
from .instruments import Instruments
from .presence import PresenceKeeper
from .recovery import Held, Recipient, event_frame, interrupted, no_history, recover

if TYPE_CHECKING:
    from ..brokers import BrokerSession, HistoryPage

logger = logging.getLogger("wsroute")


class Member(Protocol):
    """What the hub needs of a connection (``connection.Connection`` is one): its id,
    its set of topics, and a way in for frames and control orders."""

    id: str
    user_id: str | None
    presence_meta: Any
    _topics: set[str]
    _recover: dict[str, Position] | None

    def _push(self, frame: Prepared) -> None: ...

    def _control(self, control: Control) -> None: ...

    async def _push_waiting(self, frames: list[Prepared]) -> None: ...

    def _fits(self, frames: int) -> bool: ...

    async def _wait_room(self, frames: int) -> None: ...


#: How many failed broker subscriptions of one topic by other joins a join waits out
#: (each then tries itself) before it gives up.
MAX_TAKEOVERS = 4


class Subscribing:
    """A broker subscription of a topic on its way. Those who join the topic
    meanwhile wait for it: the topic reaches them only once the broker delivers it.
    If it fails (the broker refused, or the join that made it was cancelled), one of
    them takes over and subscribes itself, so that nobody stays a member of a topic
    the broker does not deliver."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.ok = False


class Hub:
    __slots__ = (
        "_broker",
        "_held",
        "_history",
        "_hold_limit",
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
        self._hold_limit = hold_limit
        # The last position delivered, per hosted topic with history.
        self._last: dict[str, Position] = {}
        #: What the members missed while this process had lost the broker.
        self.catchup = Catchup(
            broker, self._history, self._members, self._held, self._last, hold_limit
        )
        # Topics whose broker subscription is on its way, or failed while the topic
        # still has members (who then subscribe it again).
        self._subscribing: dict[str, Subscribing] = {}

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
        not host yet, in one call. If the broker fails, ``conn`` joins none of them.

        Raises:
            ValueError: a topic is not a non-empty string.
            BrokerError: the broker refused.
        """
        for topic in topics:
            if not isinstance(topic, str) or not topic:
                raise ValueError("a topic must be a non-empty string")
        keeper = self.presence
        # Before anything changes: a meta that is not JSON refuses the whole join.
        entry = (
            encode_entry(conn.id, conn.user_id, conn.presence_meta)
            if keeper is not None and any(map(keeper.applies, topics))
            else b""
        )
        added: list[str] = []
        new: list[str] = []  # hosted by no connection of this process until now
        recovering: list[tuple[str, Position, Held]] = []
        unkept: list[str] = []  # positions presented for topics that keep no history
        positions = conn._recover
        for topic in topics:
            if topic in conn._topics:
                continue
            conn._topics.add(topic)
            added.append(topic)
            members = self._members.get(topic)
            if members is None:
                self._members[topic] = {conn}
                new.append(topic)
            else:
                members.add(conn)
            since = positions.pop(topic, None) if positions else None
            if since is None:
                if self.catchup.outage:
                    self.catchup.joined(conn, topic)
                continue
            if self._history.get(topic) is None:
                unkept.append(topic)
            else:
                held = self._held.setdefault(topic, {})[conn] = Held(self._hold_limit)
                recovering.append((topic, since, held))
        present = [(topic, entry) for topic in added if keeper.applies(topic)] if keeper else ()
        # Topics another join is subscribing on the broker: this one waits for it (a
        # recovering connection reads history only once the broker delivers the
        # topic, so that whatever is published after the read reaches it live).
        others = [
            (topic, pending)
            for topic in added
            if (pending := self._subscribing.get(topic)) is not None and topic not in new
        ]
        subscribing = Subscribing() if new else None
        if subscribing is not None:
            for topic in new:
                self._subscribing[topic] = subscribing
        taken: list[str] = []  # topics this join subscribed after another's attempt failed
        try:
            if new:
                await self._broker.subscribe_many(new)
            else:
                await trio.lowlevel.checkpoint()
            for topic, pending in others:
                await self._await_subscription(topic, pending, taken)
            for topic, entry in present:
                assert keeper is not None
                await keeper.add(topic, conn.id, entry)
        except BaseException:
            self._release(conn, recovering)
            if present:
                assert keeper is not None
                with trio.CancelScope(shield=True):
                    for topic, _ in present:
                        await keeper.remove(topic, conn.id)
            for topic in added:
                conn._topics.discard(topic)
                self._forget(conn, topic)
            if subscribing is not None:
                self._settle(new, subscribing, ok=False)
            if new or taken:
                with trio.CancelScope(shield=True), contextlib.suppress(BrokerError):
                    # Those it did take, if any.
                    await self._broker.unsubscribe_many([*new, *taken])
            raise
        if subscribing is not None:
            self._settle(new, subscribing, ok=True)
        for topic in unkept:
            conn._push(no_history(topic))
        if recovering:
            await self._recover_all(conn, recovering)

    async def _await_subscription(self, topic: str, pending: Subscribing, taken: list[str]) -> None:
        """Wait for another join's broker subscription of ``topic``; if it failed,
        subscribe ``topic`` here (appending it to ``taken``), unless a third join
        already does: then wait for that one.

        Raises:
            BrokerError: the broker refused this join's own attempt, or the topic's
                subscription failed ``MAX_TAKEOVERS`` times in a row.
        """
        for _ in range(MAX_TAKEOVERS):
            await pending.done.wait()
            if pending.ok:
                return
            current = self._subscribing.get(topic)
            if current is not None and not current.done.is_set():
                pending = current
                continue
            mine = Subscribing()
            self._subscribing[topic] = mine
            taken.append(topic)
            try:
                await self._broker.subscribe_many((topic,))
            except BaseException:
                self._settle([topic], mine, ok=False)
                raise
            self._settle([topic], mine, ok=True)
            return
        raise BrokerError(
            f"could not subscribe topic {topic!r}: {MAX_TAKEOVERS} attempts in a row failed"
        )

    async def _recover_all(
        self, conn: Member, recovering: Sequence[tuple[str, Position, Held]]
    ) -> None:
        """Recover ``conn`` on each topic in turn, then let its live events through."""
        finished = 0
        try:
            for topic, since, held in recovering:
                history = self._history.get(topic)
                assert history is not None
                await recover(self._broker, conn, topic, history, since, held)
                self._release(conn, [(topic, since, held)])
                self.catchup.rejoined(conn, topic, held.sent or since)
                finished += 1
        finally:
            # Cancelled (the connection ends, a handler timeout) or failed midway: the
            # client is told, so that it reloads rather than trust a partial recovery.
            self._release(conn, recovering)
            for topic, since, held in recovering[finished:]:
                conn._push(interrupted(topic))
                if topic in conn._topics:
                    self.catchup.rejoined(conn, topic, held.sent or since)

    def _settle(self, topics: Sequence[str], subscribing: Subscribing, *, ok: bool) -> None:
        """Wake those waiting for ``subscribing``. A failed one stays on record while
        the topic has members, so that the next to join subscribes it again."""
        subscribing.ok = ok
        subscribing.done.set()
        for topic in topics:
            if self._subscribing.get(topic) is subscribing and (ok or topic not in self._members):
                del self._subscribing[topic]

    def _release(self, conn: Member, recovering: Sequence[tuple[str, Position, Held]]) -> None:
        """Stop holding live events for ``conn`` on these topics."""
        for topic, _, held in recovering:
            by_member = self._held.get(topic)
            if by_member is not None and by_member.get(conn) is held:
                del by_member[conn]
                if not by_member:
                    del self._held[topic]

    async def unsubscribe(self, conn: Member, topic: str) -> None:
        if topic in conn._topics:
            conn._topics.discard(topic)
            if self._forget(conn, topic):
                await self._broker.unsubscribe(topic)
            else:
                await trio.lowlevel.checkpoint()
            if self.presence is not None:
                await self.presence.remove(topic, conn.id)
            return
        await trio.lowlevel.checkpoint()

    def _forget(self, conn: Member, topic: str) -> bool:
        """Remove ``conn`` from ``topic``; return whether the topic became empty."""
        members = self._members.get(topic)
        if members is None:
            return False
        members.discard(conn)
        if self.catchup.gaps:
            self.catchup.drop(conn, topic)
        if members:
            return False
        del self._members[topic]
        self._last.pop(topic, None)
        pending = self._subscribing.get(topic)
        if pending is not None and pending.done.is_set():  # a failed one: nobody is left
            del self._subscribing[topic]
        return True

    async def leave(self, conn: Member) -> None:
        """Unsubscribe ``conn`` from everything; used when it ends, so never raises."""
        emptied = []
        for topic in conn._topics:
            if self._forget(conn, topic):
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
        if not members or not data:
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
        try:
            sender, frame = event_frame(data, position)  # framed once for every member
        except (ValueError, TypeError) as exc:  # only a bug elsewhere could send one
            logger.warning("dropped an event on topic %r that does not decode: %s", topic, exc)
            return
        if position is not None:
            self._last[topic] = position
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
                hold.add(position, None if skipped else frame)
            elif not skipped:
                conn._push(frame)
                pushed += 1
        self.events.value += pushed

    async def pump(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver everything the broker session yields until it ends."""
        task_status.started()
        async for message in self._broker:
            self.deliver(message.topic, message.data, message.position)
