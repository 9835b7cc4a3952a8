"""This process's part of presence (docs/presence.md): its node id and heartbeat, the
entries of its connections, the join and leave events.

The broker keeps every process's entries; this process adds one when a connection
subscribes to a topic with presence and removes it when the connection leaves the
topic or ends. One heartbeat per process, every third of ``presence_ttl``, keeps its
entries alive; the same timer sweeps the entries of processes whose heartbeat expired
(they died without cleaning up). A process that could not beat in time (the broker
was away) finds its entries swept and adds them again. A removal the broker could not
take is tried again on every beat.

Events: a broker that ``publishes_presence_events`` is given an entry's join and leave
events with the entry and publishes each in the step that adds or removes it (a
removal or the one sweep that takes it), so that an event is sent once, and a
process that dies right after the broker's step loses none. With another broker this
process publishes them once the broker confirmed the step, which a death in between
loses.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Final

import trio

from .._errors import BrokerError, PresenceUnsupported
from .._presence import Presence, PresenceEntry, PresenceStats, decode_entry, stats
from .._protocol import encode_event
from .._topics import TopicRules

if TYPE_CHECKING:
    from ..brokers import BrokerSession

logger = logging.getLogger("wsroute")

JOIN_TYPE: Final = "wsroute.join"
LEAVE_TYPE: Final = "wsroute.leave"


class PresenceKeeper:
    """Presence for one running app (a node)."""

    def __init__(self, broker: BrokerSession, rules: TopicRules[Presence], ttl: float) -> None:
        self._broker = broker
        self._rules = rules
        self._ttl = ttl
        #: This process among all that share the broker.
        self.node = secrets.token_urlsafe(9)
        # Entries of this process's connections, to add again after a sweep.
        self._local: dict[tuple[str, str], bytes] = {}
        # Entries whose removal the broker did not take: tried again on every beat
        # (the node still beats, so no sweep would remove them).
        self._unremoved: dict[tuple[str, str], bytes] = {}
        # Set when the broker is back: beat at once rather than at the next beat.
        self._back = trio.Event()

    def reconnected(self) -> None:
        """The broker is reachable again after a loss. Beat now: a broker that came
        back empty (a Redis restarted without persistence) lost this process's entries,
        which the beat finds and adds again, instead of up to a third of the ttl later."""
        self._back.set()

    def applies(self, topic: str) -> bool:
        return self._rules.get(topic) is not None

    async def add(self, topic: str, member: str, entry: bytes) -> None:
        """Make ``member`` present on ``topic``; the join event if the topic has them.

        Raises:
            BrokerError: the broker could not take it.
        """
        self._local[topic, member] = entry
        # A removal still to retry would take this entry: it is replaced instead.
        self._unremoved.pop((topic, member), None)
        await self._add(topic, member, entry)

    async def _add(self, topic: str, member: str, entry: bytes) -> None:
        broker = self._broker
        if not broker.publishes_presence_events:
            await broker.presence_add(topic, member, self.node, entry)
            await self._announce(JOIN_TYPE, topic, entry)
            return
        join = self._event(JOIN_TYPE, topic, entry)
        leave = self._event(LEAVE_TYPE, topic, entry)
        await broker.presence_add(topic, member, self.node, entry, join=join, leave=leave)

    async def remove(self, topic: str, member: str) -> None:
        """``member`` is no longer on ``topic``; the leave event, once. Never raises:
        a connection that ends cannot be refused its clean-up. A removal the broker
        does not take is tried again on every beat."""
        entry = self._local.pop((topic, member), None)
        if entry is None:
            await trio.lowlevel.checkpoint()
            return
        await self._remove(topic, member, entry)

    async def _remove(self, topic: str, member: str, entry: bytes) -> None:
        try:
            removed = await self._broker.presence_remove(topic, member, self.node)
        except BrokerError as exc:
            logger.warning("could not remove the presence of %s on %r: %s", member, topic, exc)
            self._unremoved[topic, member] = entry
            return
        self._unremoved.pop((topic, member), None)
        if removed and not self._broker.publishes_presence_events:
            await self._announce(LEAVE_TYPE, topic, entry)

    def _event(self, type: str, topic: str, entry: bytes) -> bytes | None:
        """The ``type`` event of ``entry`` as published, or None if the topic has no
        events (or, logged, the entry cannot be one)."""
        presence = self._rules.get(topic)
        if presence is None or not presence.events:
            return None
        try:
            return encode_event(type, topic, decode_entry(entry))
        except ValueError as exc:
            logger.warning("could not send %s on %r: %s", type, topic, exc)
            return None

    async def _announce(self, type: str, topic: str, entry: bytes) -> None:
        """Publish the ``type`` event of ``entry``, for a broker that does not."""
        event = self._event(type, topic, entry)
        if event is None:
            return
        try:
            await self._broker.publish(topic, event)
        except BrokerError as exc:
            logger.warning("could not send %s on %r: %s", type, topic, exc)

    async def entries(self, topic: str) -> list[dict[str, Any]]:
        """Everyone on ``topic``, in every process: decoded entries.

        Raises:
            PresenceUnsupported: the topic has no presence.
            BrokerError: the broker could not be read.
        """
        if not self.applies(topic):
            patterns = ", ".join(map(repr, self._rules.patterns)) or "none"
            raise PresenceUnsupported(
                f"topic {topic!r} has no presence: it matches none of the patterns of"
                f" App(presence=...) ({patterns})"
            )
        found = []
        for data in await self._broker.presence_list(topic):
            try:
                found.append(decode_entry(data))
            except ValueError as exc:
                logger.warning("skipped a presence entry of %r: %s", topic, exc)
        return found

    async def members(self, topic: str) -> list[PresenceEntry]:
        """``entries`` as ``PresenceEntry`` objects, for the app."""
        return [
            PresenceEntry(entry["connection"], entry.get("user"), entry.get("meta"))
            for entry in await self.entries(topic)
        ]

    async def stats(self, topic: str) -> PresenceStats:
        """How many connections and distinct users are on ``topic``."""
        return stats(await self.entries(topic))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Beat and sweep for as long as the app runs; started once the first beat
        went through, so that no entry is added by a node the broker does not know."""
        await self._broker.presence_heartbeat(self.node, self._ttl)
        task_status.started()
        while True:
            with trio.move_on_after(self._ttl / 3):
                await self._back.wait()
            self._back = trio.Event()
            try:
                await self._beat_and_sweep()
            except BrokerError as exc:
                logger.warning("presence: could not beat or sweep: %s", exc)

    async def _beat_and_sweep(self) -> None:
        for (topic, member), entry in list(self._unremoved.items()):
            await self._remove(topic, member, entry)
        if not await self._broker.presence_heartbeat(self.node, self._ttl):
            # Swept while the broker could not hear us: our connections are still here.
            logger.warning("presence: this process's entries were swept; adding them again")
            for (topic, member), entry in list(self._local.items()):
                await self._add(topic, member, entry)  # with its join: others saw it leave
        swept = await self._broker.presence_sweep()
        if not self._broker.publishes_presence_events:
            for topic, entry in swept:
                await self._announce(LEAVE_TYPE, topic, entry)
