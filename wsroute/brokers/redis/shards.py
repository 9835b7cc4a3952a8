"""A cluster session's links, following the topology: which master serves each channel,
and the session's calls routed to it. The links themselves, one per master kept up on
its own, are ``shard_links.py``'s.

**Topology.** ``topology.py`` reads which master serves each slot. Every master gets a
sharded link: a subscriber connection with the channels of its slots (``SSUBSCRIBE``)
and a publisher connection with its own queue, into which the session puts each
publish by its channel's slot, so publishes to several shards are pipelined per shard
and go out in parallel.

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
from collections.abc import Sequence

import trio
from coredis.exceptions import RedisError

from .dialect import SHARDED
from .link import Link
from .pending import Pending
from .shard_links import ShardLinks
from .slots import Address, Topology, key_slot
from .topology import read_topology

logger = logging.getLogger("wsroute")

#: Delays between readings of the topology while slots keep moving, doubling.
REFRESH_BASE = 0.02
REFRESH_CAP = 1.0


@functools.lru_cache(maxsize=1 << 16)
def slot_of(channel: bytes) -> int:
    """``key_slot``, remembered: publishing looks up a channel's slot every time."""
    return key_slot(channel)


class Shards(ShardLinks):
    """The links to every master of the cluster; an ``Attachment`` of the session.
    Made as :class:`~.shard_links.ShardLinks` is."""

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
