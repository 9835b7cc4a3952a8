"""Joining topics: a connection becomes a member, and the broker delivers the topic.

A join changes the hub's tables (``hub``) before it waits, so that another join of
the same topic meanwhile sees it: the first join of a topic in this process
subscribes it on the broker, and the others wait for that subscription rather than
miss what comes before it lands (``Subscribing``). If the broker refuses, the whole
join is undone. A connection that presented a position for a topic with history is
recovered once the broker delivers the topic (``recovery``), its live events held
meanwhile. ``Joins.forget`` is the way back, for leaving as for a join undone.

Kept apart from the hub's delivery and publishing, which run for every event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._errors import BrokerError
from .._history import History, Position
from .._presence import encode_entry
from .._topics import TopicRules
from .catchup import Catchup
from .presence import PresenceKeeper
from .recovery import Held, Recipient, interrupted, no_history, recover

if TYPE_CHECKING:
    from .._wire.frames import Prepared
    from ..brokers import BrokerSession
    from .addressing import Control


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


class Joins:
    """The joins of one hub; shares the hub's tables of members, held events, last
    positions and subscriptions on their way (``Hub`` makes them)."""

    __slots__ = (
        "_broker",
        "_catchup",
        "_held",
        "_history",
        "_hold_limit",
        "_last",
        "_members",
        "_presence",
        "_subscribing",
    )

    def __init__(
        self,
        broker: BrokerSession,
        history: TopicRules[History],
        members: dict[str, set[Member]],
        held: dict[str, dict[Recipient, Held]],
        last: dict[str, Position],
        subscribing: dict[str, Subscribing],
        catchup: Catchup,
        hold_limit: int,
        presence: PresenceKeeper | None,
    ) -> None:
        self._broker = broker
        self._history = history
        self._members = members
        self._held = held
        self._last = last
        self._subscribing = subscribing
        self._catchup = catchup
        self._hold_limit = hold_limit
        self._presence = presence

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
        keeper = self._presence
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
                if self._catchup.outage:
                    self._catchup.joined(conn, topic)
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
                self.forget(conn, topic)
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
                finished += 1
                self._settle_floor(conn, topic, held, held.sent or since)
                self._catchup.rejoined(conn, topic, held.sent or since)
        finally:
            # Cancelled (the connection ends, a handler timeout) or failed midway: the
            # client is told, so that it reloads rather than trust a partial recovery.
            self._release(conn, recovering[finished:])
            for topic, since, held in recovering[finished:]:
                conn._push(interrupted(topic))
                if topic in conn._topics:
                    self._catchup.rejoined(conn, topic, held.sent or since)

    def _settle_floor(self, conn: Member, topic: str, held: Held, at: Position) -> None:
        """``conn`` recovered on ``topic`` up to ``at``. Unless the live events this
        process receives are already there, live copies of what history gave it may
        still come: its hold stays, as a floor below which they are dropped."""
        last = self._last.get(topic)
        if last is not None and last.epoch == at.epoch and last.offset >= at.offset:
            self._release(conn, [(topic, at, held)])
        else:
            held.reset()
            held.floor = at

    def unfloor(self, topic: str, conn: Recipient, held: Held) -> None:
        """Forget ``conn``'s floor on ``topic``: live events went past it, or it left."""
        by_member = self._held.get(topic)
        if by_member is not None and by_member.get(conn) is held:
            del by_member[conn]
            if not by_member:
                del self._held[topic]

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

    def forget(self, conn: Member, topic: str) -> bool:
        """Remove ``conn`` from ``topic``; return whether the topic became empty."""
        members = self._members.get(topic)
        if members is None:
            return False
        members.discard(conn)
        if self._catchup.gaps:
            self._catchup.drop(conn, topic)
        hold = self._held[topic].get(conn) if topic in self._held else None
        if hold is not None and hold.floor is not None:
            self.unfloor(topic, conn, hold)
        if members:
            return False
        del self._members[topic]
        self._last.pop(topic, None)
        pending = self._subscribing.get(topic)
        if pending is not None and pending.done.is_set():  # a failed one: nobody is left
            del self._subscribing[topic]
        return True
