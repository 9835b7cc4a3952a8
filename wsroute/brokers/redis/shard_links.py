"""Keeping a cluster session's links up: one :class:`~.link.Link` per master, each kept
up on its own, so that losing one shard leaves the others subscribed, delivering and
publishing. :class:`ShardLinks` holds the links and their state; ``shards.py`` builds
on it what follows the topology and what the session calls.

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
"""

from __future__ import annotations

import abc
import logging
import math
import random
from collections.abc import Callable, Collection, Sequence

import trio
from coredis.exceptions import RedisError

from ..._errors import BrokerError
from .link import Link
from .pending import Pending
from .shard import Shard
from .slots import Address, Topology
from .topology import ClusterSettings, read_topology

logger = logging.getLogger("wsroute")

#: Delays between attempts to link a lost shard again, doubling, jittered.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
#: A link that stayed up this long was a success: its backoff starts over.
STABLE_AFTER = 1.0


class ShardLinks(abc.ABC):
    """The links to every master of the cluster, each kept up on its own; ``Shards``
    adds following the topology and what the session calls.

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
        self._shards: dict[Address, Shard] = {}
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
        shard = self._shards[address] = Shard()
        self._nursery.start_soon(self._keep, address, shard)

    def _tell(self) -> None:
        """Wake what waits for news of the links (the start)."""
        news, self._news = self._news, trio.Event()
        news.set()

    async def _keep(self, address: Address, shard: Shard) -> None:
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

    def _finish(self) -> None:
        """Fail what waits in the shards' queues; later publishers find them closed."""
        self.fail(self._reason or "the connection to the cluster was closed")
        lost = ConnectionError(f"the connection to the cluster was lost: {self._reason}")
        for shard in self._shards.values():
            shard.up = False
            shard.close(lost)

    def _mend(self) -> None:
        if self.whole:
            self._on_mended()

    @abc.abstractmethod
    def _new_link(self, address: Address, pending: trio.MemoryReceiveChannel[Pending]) -> Link:
        """A new link to the master at ``address``, not yet running, taking from
        ``pending``."""

    @abc.abstractmethod
    async def _follow(self) -> None:
        """Follow the topology while the links run (started once the session starts)."""
