"""A cluster session's links: one :class:`~.link.Link` per master, each kept up on its
own, so that losing one shard leaves the others subscribed, delivering and publishing.

**Topology.** ``topology.py`` reads which master serves each slot. Every master gets a
sharded link: a subscriber connection with the channels of its slots (``SSUBSCRIBE``)
and a publisher connection with its own queue, into which the session puts each
publish by its channel's slot, so publishes to several shards are pipelined per shard
and go out in parallel.

**At start** every master is linked at once. The session starts as soon as each
master has linked or failed a first attempt (with ``start_by`` still ahead: once every
master linked, or at ``start_by``), if at least one has linked: a master unreachable
at start is a shard down from the start, kept trying as below, and the session reports
itself lost until it is up. If none links, the links end and the supervisor fails (or
tries again within ``start_timeout``), as with one Redis.

**A shard lost.** When a link breaks, its shard is *down*: what waits in its queue
fails at once, and so does every new publish for its slots, naming the shard, while
the other shards go on. Its link is built again with jittered backoff and subscribes
its channels before it counts as up. Each break and each failed attempt also reads the
topology again, since a replica may have been promoted meanwhile. A shard down for
``give_up_after`` seconds ends the session (:class:`BrokerError`), as one Redis lost
for that long does.

**Slots that move.** A node that stops serving a channel says so: a server-sent
``sunsubscribe`` (its slot migrated away, or the node became a replica), a ``MOVED``
reply to a ``SSUBSCRIBE`` or to a ``SPUBLISH``. The topology is then read again, with
backoff, and each channel subscribed where it now lives, without reconnecting; the
session sends a redirected publish again to the new owner. If the set of masters
changed (a failover, a node added or gone), the links of masters that stay are kept,
those of masters gone are ended and new masters get new links.

**One state.** Until every shard is up and every wanted channel is subscribed where it
lives, what is published somewhere may be lost to this session, so it reports itself
lost meanwhile (``on_gap``, ``on_mended``): its app then tells clients, who recover
from history. A channel that finds no home within ``timeout``, or a first reading with
slots that no master serves, ends every link: the supervisor builds them again.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import Callable, Collection, Sequence

import trio
from coredis.exceptions import RedisError

from ..._errors import BrokerError
from .dialect import SHARDED
from .link import Link
from .pending import Pending
from .slots import Address, Topology, key_slot
from .topology import ClusterSettings, read_topology

logger = logging.getLogger("wsroute")

#: The most publishes queued for one shard's publisher; further publishers wait.
PENDING_LIMIT = 4096
#: Delays between readings of the topology while slots keep moving, doubling.
REFRESH_BASE = 0.02
REFRESH_CAP = 1.0
#: Delays between attempts to link a lost shard again, doubling, jittered.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
#: A link that stayed up this long was a success: its backoff starts over.
STABLE_AFTER = 1.0


@functools.lru_cache(maxsize=1 << 16)
def slot_of(channel: bytes) -> int:
    """``key_slot``, remembered: publishing looks up a channel's slot every time."""
    return key_slot(channel)


class _Shard:
    """One master's queue and current link, and whether that link is up."""

    def __init__(self) -> None:
        self.queue, self.receiver = trio.open_memory_channel[Pending](PENDING_LIMIT)
        self.link: Link | None = None
        self.up = False
        #: Why its last attempt to link failed, if one did (at start: unreachable so).
        self.failure: str | None = None
        #: Set once its first link is up: a new master's, awaited by redirected publishes.
        self.linked = trio.Event()
        self.scope = trio.CancelScope()

    def fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                self.receiver.receive_nowait().finish(error)
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def close(self, error: BaseException) -> None:
        """End the shard for good: its link, its queue and what waits in it."""
        self.scope.cancel()
        if self.link is not None:
            self.link.fail(str(error))
        self.queue.close()
        self.fail_queued(error)
        self.receiver.close()


class Shards:
    """The links to every master of the cluster; an ``Attachment`` of the session.

    Args:
        settings: the broker's options and connections.
        seeds: where to ask for the topology, in order.
        wanted: the channels the session wants (refcount above zero).
        deliver: called with ``(channel, data)`` for every message; must not block.
        on_gap: told why, when messages may be lost (a shard down, channels moved).
        on_mended: told when every shard is up and every channel subscribed again.
        start_by: until when (``trio.current_time()``) to wait for every master at
            start before starting without those still unreachable; ``None``: start
            once each master linked or failed a first attempt.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        seeds: Sequence[Address],
        *,
        wanted: Callable[[], Collection[bytes]],
        deliver: Callable[[bytes, bytes], None],
        on_gap: Callable[[str], None],
        on_mended: Callable[[], None],
        start_by: float | None = None,
    ) -> None:
        self._settings = settings
        self._start_by = start_by
        self._seeds = seeds
        self._wanted = wanted
        self._deliver = deliver
        self._on_gap = on_gap
        self._on_mended = on_mended
        self.topology: Topology | None = None
        self._shards: dict[Address, _Shard] = {}
        #: Channels a node dropped, left out until the topology is read again.
        self._moving: set[bytes] = set()
        self._stale = trio.Event()
        #: Set (and replaced) each time the topology was read again, or the links end.
        self._refreshed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._reason: str | None = None
        #: Why the session must end (a shard lost past ``give_up_after``).
        self._given_up: str | None = None
        #: Set (and replaced) whenever a shard links or fails to: what start waits on.
        self._news = trio.Event()
        #: When the session started (``ready``): a master never reached since counts
        #: its ``give_up_after`` from then, whatever ``start_by`` made it wait first.
        self._ready_at = math.inf
        self.ready = False

    @property
    def subscribed(self) -> int:
        return sum(s.link.subscribed for s in self._shards.values() if s.link is not None)

    @property
    def whole(self) -> bool:
        """Every shard up and every wanted channel subscribed where it lives."""
        return self.ready and not self._moving and self._all_up()

    def _all_up(self) -> bool:
        return all(shard.up for shard in self._shards.values())

    def fail(self, reason: str) -> None:
        """End every link (idempotent); the first reason given is the one reported."""
        if self._reason is None:
            self._reason = reason
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        for shard in self._shards.values():
            if shard.link is not None:
                shard.link.fail(reason)
        self._refreshed.set()

    async def run(self, on_ready: Callable[[], None]) -> str:
        """Read the topology, link every master, call ``on_ready`` once started (every
        master subscribed, or some still unreachable: see the module's docstring), then
        keep each link up and follow the topology; return why it ended.

        Raises:
            BrokerError: a shard stayed unreachable for ``give_up_after`` seconds.
        """
        try:
            self.topology = await read_topology(self._settings, self._seeds)
        except RedisError as exc:
            return str(exc)
        if not self.topology.complete:  # its topics would be deaf without a word
            return "the cluster has slots that no master serves"
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._reason is not None:  # failed before it started
                    nursery.cancel_scope.cancel()
                for address in sorted(self.topology.masters):
                    self._start(address)
                await self._settled()
                down = {a: s for a, s in sorted(self._shards.items()) if not s.up}
                if len(down) == len(self._shards):
                    self.fail(
                        "no master of the cluster could be reached: "
                        + "; ".join(f"shard {a}: {s.failure}" for a, s in down.items())
                    )
                    return self._reason or "the connection to the cluster was closed"
                for address, shard in down.items():
                    logger.warning(
                        "cannot reach Redis Cluster shard %s at start (%s); serving the"
                        " other shards, its topics fail until it is reached; reconnecting,"
                        " giving up after %g s",
                        address,
                        shard.failure,
                        self._settings.give_up_after,
                    )
                self.ready, self._ready_at = True, trio.current_time()
                on_ready()  # the session sees ``whole`` to tell whether it starts lost
                nursery.start_soon(self._follow)
        finally:
            self._finish()
        if self._given_up is not None:
            raise BrokerError(self._given_up)
        return self._reason or "the connection to the cluster was closed"

    async def _settled(self) -> None:
        """Return once every master is up, or, from ``start_by`` on, once each one
        either is up or has failed an attempt (so that one hung node delays the start
        by ``timeout`` at most)."""
        start_by = self._start_by if self._start_by is not None else -math.inf
        while not self._all_up():
            news = self._news
            if trio.current_time() >= start_by and all(
                shard.up or shard.failure is not None for shard in self._shards.values()
            ):
                return
            with trio.move_on_at(start_by if trio.current_time() < start_by else math.inf):
                await news.wait()

    def _start(self, address: Address) -> None:
        assert self._nursery is not None
        shard = self._shards[address] = _Shard()
        self._nursery.start_soon(self._keep, address, shard)

    def _tell(self) -> None:
        """Wake what waits for news of the links (the start)."""
        news, self._news = self._news, trio.Event()
        news.set()

    async def _keep(self, address: Address, shard: _Shard) -> None:
        """Keep ``address``'s link up: build it again with backoff when it breaks,
        while the other shards go on; give up after ``give_up_after`` seconds (for a
        master never reached, counted from the session's start)."""
        settings = self._settings
        attempt = 0
        down_since = up_since = trio.current_time()
        first = True

        def link_up() -> None:
            nonlocal first, up_since
            shard.up, up_since = True, trio.current_time()
            shard.linked.set()
            if first:
                first = False
                if shard.failure is not None and self.ready:
                    logger.info(
                        "reached Redis Cluster shard %s after %.1f s of trying; subscribed %d"
                        " channel(s)",
                        address,
                        up_since - down_since,
                        link.subscribed,
                    )
            else:
                logger.info(
                    "reconnected to Redis Cluster shard %s after %.1f s; resubscribed %d"
                    " channel(s)",
                    address,
                    up_since - down_since,
                    link.subscribed,
                )
            shard.failure = None
            self._tell()
            self._mend()

        with shard.scope:
            while True:
                link = shard.link = self._new_link(address, shard.receiver)
                reason = await link.run(link_up)
                now = trio.current_time()
                if self._reason is not None:  # every link is ending
                    return
                shard.failure = reason
                self._tell()
                lost = ConnectionError(f"the connection to shard {address} was lost: {reason}")
                shard.fail_queued(lost)
                self._stale.set()  # a replica may take over: read the topology again
                if shard.up:
                    shard.up, down_since = False, now
                    if now - up_since >= STABLE_AFTER:
                        attempt = 0
                    logger.warning(
                        "lost Redis Cluster shard %s (%s); reconnecting, giving up after %g s",
                        address,
                        reason,
                        settings.give_up_after,
                    )
                    self._on_gap(f"shard {address} is unreachable")
                else:
                    logger.debug("still cannot reach Redis Cluster shard %s: %s", address, reason)
                # Before the session started, the start's own deadline rules.
                since = max(down_since, self._ready_at) if first else down_since
                if self.ready and now - since >= settings.give_up_after:
                    self._given_up = (
                        f"lost the connection to Redis at {settings.describe()} and could not"
                        f" reconnect to shard {address} within {settings.give_up_after:g} s:"
                        f" {reason}"
                        if not first
                        else f"could not reach shard {address} of Redis at"
                        f" {settings.describe()} in {settings.give_up_after:g} s of"
                        f" trying: {reason}"
                    )
                    self.fail(self._given_up)
                    return
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 16))
                attempt += 1
                pause = random.uniform(delay / 2, delay)
                if self.ready:
                    pause = min(pause, max(0.0, since + settings.give_up_after - now))
                await trio.sleep(pause)

    def _new_link(self, address: Address, pending: trio.MemoryReceiveChannel[Pending]) -> Link:
        settings = self._settings
        return Link(
            functools.partial(settings._new_connection, address),
            wanted=lambda: self._wanted_at(address),
            deliver=self._deliver,
            pending=pending,
            timeout=settings.timeout,
            publish_timeout=settings.publish_timeout,
            health_check_interval=settings.health_check_interval,
            dialect=SHARDED,
            on_dropped=self._dropped,
        )

    def _finish(self) -> None:
        """Fail what waits in the shards' queues; later publishers find them closed."""
        self.fail(self._reason or "the connection to the cluster was closed")
        lost = ConnectionError(f"the connection to the cluster was lost: {self._reason}")
        for shard in self._shards.values():
            shard.up = False
            shard.close(lost)

    def _wanted_at(self, address: Address) -> list[bytes]:
        topology = self.topology
        assert topology is not None
        return [
            channel
            for channel in self._wanted()
            if channel not in self._moving and topology.owner(slot_of(channel)) == address
        ]

    def owner(self, channel: bytes) -> Address | None:
        """The master that serves ``channel``, as last read."""
        return self.topology.owner(slot_of(channel)) if self.topology else None

    def queue_at(self, address: Address) -> trio.MemorySendChannel[Pending] | None:
        """The publish queue of the master at ``address``, if it is one of ours and up."""
        shard = self._shards.get(address)
        return shard.queue if shard is not None and shard.up else None

    def queue_for(self, channel: bytes) -> trio.MemorySendChannel[Pending] | None:
        """The publish queue of the master serving ``channel``, if its link is up."""
        owner = self.owner(channel)
        return self.queue_at(owner) if owner is not None else None

    async def redirected(self, channel: bytes, deadline: float) -> None:
        """A publish to ``channel`` was redirected (``MOVED``): read the topology again
        and return once that is done and the new owner, if new, is linked (or at
        ``deadline``, or when the links end)."""
        refreshed = self._refreshed
        self._stale.set()
        with trio.move_on_at(deadline):
            await refreshed.wait()
            owner = self.owner(channel)
            shard = self._shards.get(owner) if owner is not None else None
            if shard is not None and self._reason is None:
                await shard.linked.wait()

    def _dropped(self, channels: Sequence[bytes]) -> None:
        self._moving.update(channels)
        self._stale.set()
        self._on_gap(f"{len(channels)} subscribed channel(s) moved to another shard")

    def _mend(self) -> None:
        if self.whole:
            self._on_mended()

    async def _follow(self) -> None:
        """Read the topology again whenever a node says a slot moved or a link broke;
        give up (end every link) if channels stay homeless past ``timeout``."""
        delay = 0.0
        homeless_since: float | None = None
        while True:
            await self._stale.wait()
            now = trio.current_time()
            if not self._moving:
                homeless_since = None
            elif homeless_since is None:
                homeless_since = now
            elif now - homeless_since > self._settings.timeout:
                self.fail(f"channels found no shard within {self._settings.timeout:g} s of moving")
                return
            await trio.sleep(delay)
            delay = min(REFRESH_CAP, max(REFRESH_BASE, delay * 2))
            self._stale = trio.Event()
            seeds = [*sorted(self._shards), *self._seeds]
            try:
                topology = await read_topology(self._settings, seeds)
                if not topology.complete:
                    raise RedisError("the cluster has slots that no master serves")
            except RedisError as exc:
                logger.debug("reading the cluster's topology again failed: %s", exc)
                if self._moving or not self._all_up():  # else the next news asks again
                    self._stale.set()
                continue
            if topology != self.topology or self._moving:  # else nothing to resubscribe
                self._adopt(topology)
                self._moving.clear()
                for shard in list(self._shards.values()):
                    if shard.link is not None and shard.up:
                        await shard.link.resync()
                self._mend()  # unless dropped again while resubscribing
            refreshed, self._refreshed = self._refreshed, trio.Event()
            refreshed.set()
            if not self._all_up():
                self._stale.set()  # read again (each REFRESH_CAP): a replica may take over
            elif not self._stale.is_set():
                delay = 0.0

    def _adopt(self, topology: Topology) -> None:
        """Take ``topology``: end the links of masters gone, link new masters."""
        old = set(self._shards)
        self.topology = topology
        if topology.masters == old:
            return
        logger.warning(
            "Redis Cluster at %s changed masters: %s",
            self._settings.describe(),
            ", ".join(
                [f"{a} gone" for a in sorted(old - topology.masters)]
                + [f"{a} new" for a in sorted(topology.masters - old)]
            ),
        )
        for address in sorted(old - topology.masters):
            shard = self._shards.pop(address)
            shard.close(ConnectionError(f"shard {address} is no longer a master"))
        for address in sorted(topology.masters - old):
            self._start(address)
        self._on_gap("the cluster's masters changed")  # until the new links are up

    # -- what the session calls, as on one link ---------------------------------------

    async def subscribe(self, channels: Sequence[bytes]) -> None:
        """``SSUBSCRIBE`` each channel on its shard, the shards in parallel. A shard
        that is down subscribes its channels once it is up again."""
        groups: dict[Link, list[bytes]] = {}
        for channel in channels:
            owner = self.owner(channel)
            shard = self._shards.get(owner) if owner is not None else None
            if shard is not None and shard.link is not None:
                groups.setdefault(shard.link, []).append(channel)
            elif shard is None:  # no home now: wanted all the same, placed after the next reading
                self._dropped([channel])
        if len(groups) == 1:
            ((link, group),) = groups.items()
            await link.subscribe(group)
            return
        async with trio.open_nursery() as nursery:
            for link, group in groups.items():
                nursery.start_soon(link.subscribe, group)

    async def confirmed(self, channels: Sequence[bytes]) -> None:
        for shard in list(self._shards.values()):
            if shard.link is not None:
                await shard.link.confirmed(channels)

    def unsubscribe(self, channel: bytes) -> None:
        self._moving.discard(channel)
        for shard in self._shards.values():  # where it lives now, or lived
            if shard.link is not None:
                shard.link.unsubscribe(channel)
