"""A cluster session's links: one :class:`~.link.Link` per master, for one reading of
the cluster's topology, made, run and dropped as a unit (as one link is for one Redis).

**Topology.** ``CLUSTER SLOTS`` of the first seed that answers (the configured seeds,
after the masters last known) says which master serves each slot. Every master gets a
sharded link: a subscriber connection with the channels of its slots (``SSUBSCRIBE``)
and a publisher connection with its own queue, into which the session puts each
publish by its channel's slot, so publishes to several shards are pipelined per shard
and go out in parallel.

**Slots that move.** A node that stops serving a channel says so: a server-sent
``sunsubscribe`` (its slot migrated away, or the node became a replica), a ``MOVED``
reply to a ``SSUBSCRIBE`` or to a ``SPUBLISH``. The links then read the topology
again, with backoff, and subscribe each channel where it now lives, without
reconnecting; the session sends a redirected publish again to the new owner. Until a
dropped channel is subscribed again, what the new owner receives for it is lost to
this session, so the session reports itself lost meanwhile (``on_gap``,
``on_mended``): its app then tells clients, who recover from history. If the
set of masters changed (failover, a node added), or a channel found no home within
``timeout``, the whole attachment ends and the supervisor builds a new one: the
session reports the loss and the recovery, as for one Redis.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import trio
from coredis.connection import BaseConnection
from coredis.exceptions import RedisError

from ..._util import collapse_exception_group
from .dialect import SHARDED
from .link import Link, explain
from .pending import Pending
from .slots import Address, Topology, key_slot

logger = logging.getLogger("wsroute")

#: The most publishes queued for one shard's publisher; further publishers wait.
PENDING_LIMIT = 4096
#: Seconds to wait for a seed's answer before asking the next one too.
SEED_STAGGER = 0.25
#: Delays between readings of the topology while slots keep moving, doubling.
REFRESH_BASE = 0.02
REFRESH_CAP = 1.0


class ClusterSettings(Protocol):
    """What the links need of their broker (``RedisClusterBroker`` is one)."""

    seeds: list[Address]
    timeout: float
    publish_timeout: float
    health_check_interval: float

    def _new_connection(self, address: Address | None = None) -> BaseConnection: ...


@functools.lru_cache(maxsize=1 << 16)
def slot_of(channel: bytes) -> int:
    """``key_slot``, remembered: publishing looks up a channel's slot every time."""
    return key_slot(channel)


async def ask_topology(settings: ClusterSettings, seed: Address) -> Topology:
    """The topology as the node at ``seed`` tells it.

    Raises:
        RedisError: it could not be asked, or told nothing usable (the message says).
    """
    connection = settings._new_connection(seed)
    try:
        with trio.fail_after(settings.timeout), collapse_exception_group():
            async with trio.open_nursery() as nursery:
                await nursery.start(connection.run)
                try:
                    reply = await connection.create_request(b"CLUSTER", b"SLOTS")
                finally:
                    nursery.cancel_scope.cancel()
        topology = Topology.parse(reply, seed)
    except trio.TooSlowError:
        raise RedisError(f"{seed}: no answer within {settings.timeout:g} s") from None
    except (RedisError, OSError, ValueError) as exc:
        raise RedisError(f"{seed}: {explain(exc)}") from exc
    if not topology.masters:
        raise RedisError(f"{seed}: serves no slots yet")
    return topology


async def read_topology(settings: ClusterSettings, seeds: Sequence[Address]) -> Topology:
    """The topology as the first of ``seeds`` to answer tells it. The seeds are asked
    in order, each as soon as the one before failed or after ``SEED_STAGGER`` seconds
    without an answer, so that a hung node delays the answer by that much at most.

    Raises:
        RedisError: no seed answered (every seed's error, named).
    """
    errors: dict[Address, str] = {}
    found: list[Topology] = []
    async with trio.open_nursery() as nursery:

        async def ask(seed: Address, failed: trio.Event) -> None:
            try:
                found.append(await ask_topology(settings, seed))
                nursery.cancel_scope.cancel()
            except RedisError as exc:
                errors[seed] = str(exc)
                failed.set()

        for seed in dict.fromkeys(seeds):  # in order, once each
            failed = trio.Event()
            nursery.start_soon(ask, seed, failed)
            with trio.move_on_after(SEED_STAGGER):
                await failed.wait()
    if found:
        return found[0]
    told = "; ".join(errors[seed] for seed in dict.fromkeys(seeds) if seed in errors)
    raise RedisError(f"no seed node told the cluster's topology ({told})")


class Shards:
    """The links to every master of the cluster; an ``Attachment`` of the session.

    Args:
        settings: the broker's options and connections.
        seeds: where to ask for the topology, in order.
        wanted: the channels the session wants (refcount above zero).
        deliver: called with ``(channel, data)`` for every message; must not block.
        on_gap: told (with how many) when a node dropped channels: their messages
            published elsewhere are lost until they are subscribed again.
        on_mended: told when every dropped channel is subscribed again.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        seeds: Sequence[Address],
        *,
        wanted: Callable[[], Collection[bytes]],
        deliver: Callable[[bytes, bytes], None],
        on_gap: Callable[[int], None],
        on_mended: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._seeds = seeds
        self._wanted = wanted
        self._deliver = deliver
        self._on_gap = on_gap
        self._on_mended = on_mended
        self.topology: Topology | None = None
        self._links: dict[Address, Link] = {}
        self._queues: dict[Address, trio.MemorySendChannel[Pending]] = {}
        #: Channels a node dropped, left out until the topology is read again.
        self._moving: set[bytes] = set()
        self._stale = trio.Event()
        #: Set (and replaced) each time the topology was read again, or the links end.
        self._refreshed = trio.Event()
        self._cancel_scope: trio.CancelScope | None = None
        self._reason: str | None = None
        self.ready = False

    @property
    def subscribed(self) -> int:
        return sum(link.subscribed for link in self._links.values())

    def fail(self, reason: str) -> None:
        """End every link (idempotent); the first reason given is the one reported."""
        if self._reason is None:
            self._reason = reason
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
        for link in self._links.values():
            link.fail(reason)
        self._refreshed.set()

    async def run(self, on_ready: Callable[[], None]) -> str:
        """Read the topology, link every master, call ``on_ready`` once all are
        subscribed, follow moving slots until a link breaks; return why it ended."""
        try:
            self.topology = await read_topology(self._settings, self._seeds)
        except RedisError as exc:
            return str(exc)
        if not self.topology.complete:  # its topics would be deaf without a word
            return "the cluster has slots that no master serves"
        receivers = {}
        for address in self.topology.masters:
            self._queues[address], receivers[address] = trio.open_memory_channel[Pending](
                PENDING_LIMIT
            )
        try:
            async with trio.open_nursery() as nursery:
                self._cancel_scope = nursery.cancel_scope
                if self._reason is not None:  # failed before it started
                    nursery.cancel_scope.cancel()
                waiting = len(self.topology.masters)
                all_ready = trio.Event()

                def link_ready() -> None:
                    nonlocal waiting
                    waiting -= 1
                    if not waiting:
                        all_ready.set()

                for address in sorted(self.topology.masters):
                    link = self._links[address] = self._new_link(address, receivers[address])
                    nursery.start_soon(self._run_link, address, link, link_ready)
                await all_ready.wait()
                self.ready = True
                on_ready()
                nursery.start_soon(self._follow)
        finally:
            self._finish(receivers.values())
        return self._reason or "the connection to the cluster was closed"

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

    async def _run_link(self, address: Address, link: Link, on_ready: Callable[[], None]) -> None:
        reason = await link.run(on_ready)
        self.fail(f"shard {address}: {reason}")

    def _finish(self, receivers: Collection[trio.MemoryReceiveChannel[Pending]]) -> None:
        """Fail what waits in the shards' queues; later publishers find them closed."""
        self.fail(self._reason or "the connection to the cluster was closed")
        lost = ConnectionError(f"the connection to the cluster was lost: {self._reason}")
        for queue in self._queues.values():
            queue.close()
        for receiver in receivers:
            while True:
                try:
                    receiver.receive_nowait().finish(lost)
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            receiver.close()

    def _wanted_at(self, address: Address) -> list[bytes]:
        topology = self.topology
        assert topology is not None
        return [
            channel
            for channel in self._wanted()
            if channel not in self._moving and topology.owner(slot_of(channel)) == address
        ]

    def queue_for(self, channel: bytes) -> trio.MemorySendChannel[Pending] | None:
        """The publish queue of the master serving ``channel``, if one does."""
        owner = self.topology.owner(slot_of(channel)) if self.topology else None
        return self._queues.get(owner) if owner is not None else None

    def queue_at(self, address: Address) -> trio.MemorySendChannel[Pending] | None:
        """The publish queue of the master at ``address``, if it is one of ours."""
        return self._queues.get(address)

    async def redirected(self, deadline: float) -> None:
        """A publish was redirected (``MOVED``): read the topology again and return
        once that is done (or at ``deadline``, or when the links end)."""
        refreshed = self._refreshed
        self._stale.set()
        with trio.move_on_at(deadline):
            await refreshed.wait()

    def _dropped(self, channels: Sequence[bytes]) -> None:
        self._moving.update(channels)
        self._stale.set()
        self._on_gap(len(channels))

    async def _follow(self) -> None:
        """Read the topology again whenever a node says a slot moved; give up (end
        every link) if the masters changed or channels stay homeless past ``timeout``."""
        delay = 0.0
        unsettled_since: float | None = None
        while True:
            await self._stale.wait()
            now = trio.current_time()
            if unsettled_since is None:
                unsettled_since = now
            elif now - unsettled_since > self._settings.timeout:
                self.fail(f"channels found no shard within {self._settings.timeout:g} s of moving")
                return
            await trio.sleep(delay)
            delay = min(REFRESH_CAP, max(REFRESH_BASE, delay * 2))
            self._stale = trio.Event()
            seeds = [*sorted(self._links), *self._seeds]
            try:
                topology = await read_topology(self._settings, seeds)
            except RedisError as exc:
                self._stale.set()
                logger.debug("reading the cluster's topology again failed: %s", exc)
                continue
            assert self.topology is not None
            if topology.masters != self.topology.masters or not topology.complete:
                self.fail("the cluster's masters changed")
                return
            self.topology = topology
            self._moving.clear()
            for link in self._links.values():
                await link.resync()
            if not self._moving:  # none dropped again while resubscribing
                self._on_mended()
            refreshed, self._refreshed = self._refreshed, trio.Event()
            refreshed.set()
            if not self._stale.is_set():
                delay, unsettled_since = 0.0, None

    # -- what the session calls, as on one link ---------------------------------------

    async def subscribe(self, channels: Sequence[bytes]) -> None:
        """``SSUBSCRIBE`` each channel on its shard, the shards in parallel."""
        groups: dict[Address, list[bytes]] = {}
        topology = self.topology
        for channel in channels:
            owner = topology.owner(slot_of(channel)) if topology else None
            if owner is not None and owner in self._links:
                groups.setdefault(owner, []).append(channel)
            else:  # no home now: wanted all the same, placed after the next reading
                self._dropped([channel])
        if len(groups) == 1:
            ((owner, group),) = groups.items()
            await self._links[owner].subscribe(group)
            return
        async with trio.open_nursery() as nursery:
            for owner, group in groups.items():
                nursery.start_soon(self._links[owner].subscribe, group)

    async def confirmed(self, channels: Sequence[bytes]) -> None:
        for link in self._links.values():
            await link.confirmed(channels)

    def unsubscribe(self, channel: bytes) -> None:
        self._moving.discard(channel)
        for link in self._links.values():  # where it lives now, or lived
            link.unsubscribe(channel)
