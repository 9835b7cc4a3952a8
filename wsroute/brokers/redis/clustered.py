"""The Redis Cluster broker's session: the Redis session, attached to every master
through ``shards.py``, with channels named for their slot and publishes routed to
their shard."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio
from coredis.exceptions import AskError, TryAgainError

from ..._errors import BrokerError
from .._base import BrokerState, StateListener
from . import present
from . import present_sharded as sharded
from .pending import Call, Pending
from .session import RedisSession, Settings
from .shards import Shards
from .slots import Address
from .topology import ClusterSettings

logger = logging.getLogger("wsroute")

if TYPE_CHECKING:
    from coredis.connection import BaseConnection


class Cluster(Settings, ClusterSettings, Protocol):
    """What the session needs of its broker (``RedisClusterBroker`` is one)."""

    def _new_connection(self, address: Address | None = None) -> BaseConnection: ...


class ClusterSession(RedisSession):
    """One process's attachment to a Redis Cluster; made by
    :meth:`RedisClusterBroker.connect`. It is a :class:`RedisSession` whose attachment
    is one link per master (``shards.py``) and whose publishes go to the shard of
    their channel, sent again if the shard redirects them (``MOVED``, ``ASK``), until
    ``publish_timeout``."""

    _sharded = True
    #: Topics on different shards travel on different connections.
    orders_across_topics = False

    def __init__(self, broker: Cluster, on_state: StateListener | None) -> None:
        super().__init__(broker, on_state)
        self._cluster = broker
        self._shards: Shards | None = None
        #: Per node, the end of its last heartbeat (Redis' clock, ms), which entries
        #: added for it carry; and per node and topic, the members this session added.
        self._ends: dict[str, bytes] = {}
        self._present: dict[str, dict[str, set[str]]] = {}

    def _channel(self, topic: str) -> bytes:
        # The hash tag puts the channel in the slot of the topic's history keys.
        return b"%s{%s}" % (self._prefix, topic.encode())

    def _topic(self, channel: bytes) -> str:
        return channel[len(self._prefix) + 1 : -1].decode()

    def _new_link(self) -> Shards:
        previous = self._shards.topology if self._shards is not None else None
        known = sorted(previous.masters) if previous is not None else []
        self._shards = Shards(
            self._cluster,
            [*known, *self._cluster.seeds],
            wanted=lambda: [self._channel(topic) for topic in self._counts],
            deliver=self._deliver,
            on_gap=self._gap,
            on_mended=self._mended,
        )
        return self._shards

    def _gap(self, why: str) -> None:
        """A shard is down or channels moved: messages may be lost until mended."""
        if self._connected and not self._closed:
            self._connected = False
            logger.warning("Redis Cluster at %s: %s", self._cluster.describe(), why)
            self._notify(BrokerState.DISCONNECTED)

    def _mended(self) -> None:
        shards = self._shards
        if not self._connected and shards is not None and shards.whole and not self._closed:
            self._connected = True
            logger.info("every shard of Redis Cluster is up and subscribed again")
            self._notify(BrokerState.CONNECTED)

    async def _run(self, item: Pending, what: str, *, abandon: bool = True) -> object:
        """Queue ``item`` for the shard of its channel and return Redis' answer; if the
        shard says the slot moved, read the topology again and send it there, until
        ``publish_timeout``. Fails at once if that shard is down (the others serve on)."""
        self._check_open()
        deadline = trio.current_time() + self._cluster.publish_timeout
        channel = item.channel if not isinstance(item, Call) else item.keys[0]
        while True:
            shards = self._shards
            if self._link is None or shards is None or not shards.ready:
                await trio.lowlevel.checkpoint()
                raise BrokerError(
                    f"Redis Cluster at {self._cluster.describe()} has no reachable master for"
                    f" {channel!r} (reconnecting)"
                )
            queue = shards.queue_for(channel)
            if queue is None:  # its shard alone is down: the others go on
                await trio.lowlevel.checkpoint()
                raise BrokerError(
                    f"Redis Cluster shard {shards.owner(channel)} serving {channel!r} is"
                    " unreachable (reconnecting)"
                )
            try:
                return await self._exchange(queue, item, what, deadline, abandon)
            except BrokerError as exc:
                # MOVED, ASK (a slot on its way), TRYAGAIN (its keys split between
                # the two nodes meanwhile): nothing ran, so sending it again is safe.
                redirected = isinstance(exc.__cause__, AskError | TryAgainError)
                if not redirected or trio.current_time() >= deadline:
                    raise
            await shards.redirected(channel, deadline)
            item = item.again()

    # Presence: ``present_sharded.py`` says how its keys are cut to fit the slots.

    keeps_presence = True

    async def presence_add(self, topic: str, member: str, node: str, entry: bytes) -> None:
        ttl = self._presence_ttl or present.UNBEATEN_TTL
        what = "adding a presence entry in Redis"
        members = self._present.setdefault(node, {}).get(topic)
        if not members:  # indexed first: a sweeper finds every topic with entries
            await self._run(sharded.index_call(self._prefix, node, topic, True, ttl), what)
            members = self._present[node].setdefault(topic, set())
        members.add(member)
        end = self._ends.get(node, b"")
        await self._run(sharded.add_call(self._prefix, topic, member, node, entry, end, ttl), what)

    async def presence_remove(self, topic: str, member: str, node: str) -> bool:
        # Clean-up: sent even if the caller stops waiting, as on one Redis.
        what = "removing a presence entry from Redis"
        call = sharded.remove_call(self._prefix, topic, member, node)
        removed = self._parse(present.flag_of, await self._run(call, what, abandon=False), what)
        members = self._present.get(node, {}).get(topic)
        if members is not None and member in members:
            members.discard(member)
            if not members:
                del self._present[node][topic]
                keep = self._presence_ttl or present.UNBEATEN_TTL
                drop = sharded.index_call(self._prefix, node, topic, False, keep)
                await self._run(drop, what, abandon=False)
        return removed

    async def presence_list(self, topic: str) -> list[bytes]:
        what = "listing presence from Redis"
        call = sharded.list_call(self._prefix, topic)
        return self._parse(present.entries_of, await self._run(call, what), what)

    async def presence_heartbeat(self, node: str, ttl: float) -> bool:
        self._presence_ttl = keep = max(self._presence_ttl, ttl)
        what = "beating a presence heartbeat in Redis"
        call = sharded.beat_call(self._prefix, node, ttl, keep)
        alive, end = self._parse(sharded.beat_of, await self._run(call, what), what)
        self._ends[node] = end
        calls = [
            sharded.beat_topic_call(self._prefix, topic, node, end, keep)
            for topic in self._present.get(node, ())
        ]
        calls.append(sharded.index_call(self._prefix, node, "", False, keep))  # renews it
        await self._run_all(calls, what)
        return alive

    async def presence_sweep(self) -> list[tuple[str, bytes]]:
        # Once nodes are claimed, the rest is clean-up that must not be abandoned.
        what = "sweeping presence in Redis"
        reply = await self._run(sharded.claim_call(self._prefix), what, abandon=False)
        dead = self._parse(lambda r: [n.decode() for n in present.entries_of(r)], reply, what)
        removed: list[tuple[str, bytes]] = []
        for node in dead:
            reply = await self._run(
                sharded.take_index_call(self._prefix, node), what, abandon=False
            )
            topics = self._parse(lambda r: [t.decode() for t in present.entries_of(r)], reply, what)
            for topic in topics:
                call = sharded.sweep_topic_call(self._prefix, topic, node)
                reply = await self._run(call, what, abandon=False)
                entries = self._parse(present.entries_of, reply, what)
                removed.extend((topic, entry) for entry in entries)
        return removed

    async def _run_all(self, calls: list[Call], what: str) -> None:
        """Run ``calls`` at once (each shard pipelines its own); raise the first error."""
        errors: list[BrokerError] = []

        async def run(call: Call) -> None:
            try:
                await self._run(call, what)
            except BrokerError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(run, call)
        if errors:
            raise errors[0]
