"""Catch-up: what this process's connections missed while it had lost the broker.

Recovery (``recovery``) serves a client that comes back. When this process loses
the broker itself (``BrokerState.DISCONNECTED`` ... ``CONNECTED``), its connections
stay open, but what other processes publish meanwhile never reaches them. For the
topics with history, the hub remembers the last position it delivered. From the
loss on, the live events of their members are held (``Held``); once the broker is
back (it has resubscribed), each topic's history is read once after that position,
for all its members, and each member gets the missed events, the held ones that
follow, then a ``wsroute.recovery`` event: the steps of ``recovery.recover``.

A member that had received nothing of the topic when the loss began has no position
to read from: it is told ``recovered: false``, ``broker_lost``, with the topic's
position. A member still recovering on its own (``wsroute.recover``) when the loss
begins finishes that first (its held events are spoiled, so that it reads history
again rather than trust them), then catches up from where it got if the broker is
still lost. Topics without history are left alone: nothing can fill their gap, and
apps hear ``broker_lost`` and ``broker_restored``.

The same serves live gaps (``skipped``): events of a topic that never reached this
process while the broker stayed connected (its inbound backlog overflowed, a
cluster's redirected publish failed). The hub finds them by offset, an event further
ahead than the next one, or the broker session reports them; the topic's members
then catch up from the last position delivered, at once. Reads of history move that
position on, so that live copies of what was read are not delivered twice.

The replay runs in the serving's system nursery, not in the connections': one read
serves members of many connections, and another loss must cancel all of it at once.
Each member's part has its own cancel scope, cancelled when it leaves the topic or
its connection ends, so none outlives its membership. Another loss cancels the
replay; each member then resumes, at the next ``CONNECTED``, from the last event it
was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import trio

from .._errors import BrokerError
from .._history import History, Position
from .._topics import TopicRules
from .recovery import Held, Read, Recipient, read, recover

if TYPE_CHECKING:
    from ..brokers import BrokerSession

logger = logging.getLogger("wsroute")


class Behind:
    """One member's catch-up on one topic: where it stands, what is held for it, and
    the scope of its replay once that started."""

    __slots__ = ("_since", "before", "held", "scope")

    def __init__(self, since: Position | None, held: Held, before: Behind | None = None) -> None:
        self._since = since
        self.held = held
        self.scope: trio.CancelScope | None = None
        #: The catch-up that another loss cut short, if any: this one starts where
        #: that one got, known only once its part has stopped (a cancelled task runs
        #: on to its next wait).
        self.before = before

    @property
    def since(self) -> Position | None:
        before = self.before
        return self._since if before is None else before.held.sent or before.since

    def fix(self) -> Position | None:
        """Where it starts, now that the part cut short has stopped; forgets that."""
        self._since, self.before = self.since, None
        return self._since


class Catchup:
    """The catch-ups of one hub; shares the hub's tables of members, held events and
    last positions (it changes only the held events of its own members)."""

    __slots__ = (
        "_again",
        "_broker",
        "_held",
        "_history",
        "_hold_limit",
        "_last",
        "_members",
        "_scope",
        "_starts",
        "gaps",
        "outage",
        "repairs",
    )

    def __init__(
        self,
        broker: BrokerSession,
        history: TopicRules[History],
        members: Mapping[str, Collection[Recipient]],
        held: dict[str, dict[Recipient, Held]],
        last: dict[str, Position],
        hold_limit: int,
    ) -> None:
        self._broker = broker
        self._history = history
        self._members = members
        self._held = held
        self._last = last
        self._hold_limit = hold_limit
        #: Per topic, the members that missed events and have not caught up yet.
        self.gaps: dict[str, dict[Recipient, Behind]] = {}
        #: Per topic, the last position delivered when the broker was lost: where a
        #: connection that joins it during the outage starts.
        self._starts: dict[str, Position | None] = {}
        #: Whether the broker is lost (from ``lost`` to ``restored``).
        self.outage = False
        self._scope: trio.CancelScope | None = None  # the replay under way
        # Whether members were left behind while a replay was under way: once it ends,
        # another one starts for them.
        self._again = False
        #: Where live gaps are filled (``skipped``): the hub's, while it delivers.
        self.repairs: trio.Nursery | None = None

    def lost(self) -> None:
        """The broker is lost: hold the live events of every member of a topic with
        history from now on, and stop a replay under way."""
        self.outage = True
        self._again = False
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        for topic, gap in list(self.gaps.items()):
            for conn, behind in list(gap.items()):
                # Anew, so that the end of the old part leaves this one alone.
                self._enter(topic, conn, None, behind)
        for topic, members in self._members.items():
            if self._history.get(topic) is None:
                continue
            start = self._starts[topic] = self._last.get(topic)
            gap = self.gaps.get(topic, {})
            holding = self._held.get(topic, {})
            for conn in members:
                if conn in gap:
                    continue
                own = holding.get(conn)
                if own is None:
                    self._enter(topic, conn, start)
                elif own.floor is not None:  # recovered beyond the live events
                    self._enter(topic, conn, _ahead(own.floor, start))
                else:
                    own.spoil()  # recovering on its own: it comes back through rejoined()

    def restored(self, nursery: trio.Nursery) -> None:
        """The broker is back and has resubscribed: replay what the members missed."""
        self.outage = False
        self._starts.clear()
        if self.gaps:
            self._start(nursery)

    def skipped(self, topic: str, since: Position, until: Position) -> None:
        """Live events of ``topic`` after ``since``, up to ``until``, never reached
        this process, though the broker is not lost: its inbound backlog overflowed,
        or a cluster's redirected publish failed after the event was kept. The
        members who stood at ``since`` (or further, but before ``until``: recovered
        on their own) catch up from history as after a loss, the live events held
        from now on; those still recovering or catching up find the gap themselves."""
        members = self._members.get(topic)
        nursery = self.repairs
        if not members or nursery is None or self._history.get(topic) is None:
            return
        holding = self._held.get(topic, {})
        behind: list[tuple[Recipient, Position]] = []
        for conn in members:
            own = holding.get(conn)
            if own is None:
                behind.append((conn, since))
            elif own.floor is not None:  # recovered beyond the live events
                floor = own.floor
                if floor.epoch != until.epoch or floor.offset < until.offset:
                    behind.append((conn, _ahead(floor, since) or since))
        if not behind:
            return
        logger.warning(
            "live events of topic %r after offset %d (epoch %s) did not reach this process;"
            " catching up %d subscription(s) from history",
            topic,
            since.offset,
            since.epoch,
            len(behind),
        )
        for conn, start in behind:
            self._enter(topic, conn, start)
        if not self.outage:
            self._start(nursery)

    def _start(self, nursery: trio.Nursery) -> None:
        if self._scope is None:
            self._scope = trio.CancelScope()
            nursery.start_soon(self._replay, self._scope, nursery)
        else:
            self._again = True

    def joined(self, conn: Recipient, topic: str) -> None:
        """``conn`` joined ``topic`` (without a position to recover): while the broker
        is lost, it misses what is published from now on, so it catches up too."""
        if self.outage and self._history.get(topic) is not None:
            self._enter(topic, conn, self._starts.get(topic))

    def rejoined(self, conn: Recipient, topic: str, since: Position | None) -> None:
        """``conn`` finished recovering on ``topic`` on its own, standing at ``since``:
        if the broker is lost, it catches up from there."""
        if self.outage:
            self._enter(topic, conn, since)

    def drop(self, conn: Recipient, topic: str) -> None:
        """``conn`` left ``topic``: its catch-up there ends."""
        gap = self.gaps.get(topic)
        behind = gap.pop(conn, None) if gap is not None else None
        if behind is None:
            return
        if not gap:
            del self.gaps[topic]
        if behind.scope is not None:
            behind.scope.cancel()
        self._release(topic, conn, behind.held)

    def _enter(
        self, topic: str, conn: Recipient, since: Position | None, before: Behind | None = None
    ) -> None:
        held = Held(self._hold_limit)
        self._held.setdefault(topic, {})[conn] = held
        self.gaps.setdefault(topic, {})[conn] = Behind(since, held, before)

    def _release(self, topic: str, conn: Recipient, held: Held) -> None:
        by_member = self._held.get(topic)
        if by_member is not None and by_member.get(conn) is held:
            del by_member[conn]
            if not by_member:
                del self._held[topic]

    async def _replay(self, scope: trio.CancelScope, nursery: trio.Nursery) -> None:
        """One read per topic and starting position, then each member's part."""
        logger.info(
            "catching up %d subscription(s) on %d topic(s) with history",
            sum(map(len, self.gaps.values())),
            len(self.gaps),
        )
        with scope:
            async with trio.open_nursery() as parts:
                for topic, gap in list(self.gaps.items()):
                    history = self._history.get(topic)
                    assert history is not None
                    starts: dict[Position | None, list[tuple[Recipient, Behind]]] = {}
                    for conn, behind in gap.items():
                        if behind.scope is None:
                            since = behind.fix()
                            starts.setdefault(since, []).append((conn, behind))
                    for since, behinds in starts.items():
                        page = await read(self._broker, topic, history, since)
                        if not isinstance(page, BrokerError):
                            self._advance(topic, page.position, since)
                        for conn, behind in behinds:
                            if gap.get(conn) is behind:  # it may have left during the read
                                behind.scope = trio.CancelScope()
                                parts.start_soon(self._part, topic, history, conn, behind, page)
        if self._scope is scope:
            self._scope = None
            if self._again:
                self._again = False
                if self.gaps and not self.outage:
                    self._start(nursery)

    def _advance(self, topic: str, top: Position, since: Position | None) -> None:
        """The members read history from ``since`` up to ``top``: it becomes the last
        position delivered, unless a live event went further. So the next live event
        is not taken for a gap, and live copies of what was read, still on their way,
        are dropped (``Hub.deliver``). A top behind ``since`` in the same epoch (a
        Redis that lost its last writes in a failover) counts from there again."""
        last = self._last.get(topic)
        if last is None:
            return
        if (
            last.epoch != top.epoch
            or last.offset < top.offset
            or (since is not None and since.epoch == top.epoch and top.offset < since.offset)
        ):
            self._last[topic] = top

    async def _part(
        self, topic: str, history: History, conn: Recipient, behind: Behind, page: Read
    ) -> None:
        assert behind.scope is not None
        try:
            with behind.scope:
                await recover(self._broker, conn, topic, history, behind.since, behind.held, page)
        finally:
            # Unless it left, or another loss made it a new Behind.
            gap = self.gaps.get(topic)
            if gap is not None and gap.get(conn) is behind:
                del gap[conn]
                if not gap:
                    del self.gaps[topic]
            self._release(topic, conn, behind.held)


def _ahead(floor: Position, last: Position | None) -> Position | None:
    """Where a connection recovered up to ``floor`` stands, the live events having
    reached ``last``: the further of the two (``floor`` in another epoch)."""
    if last is None or last.epoch != floor.epoch or floor.offset > last.offset:
        return floor
    return last
