"""The Redis Cluster broker's session: the Redis session, attached to every master
through ``shards.py``, with channels named for their slot and publishes routed to
their shard."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Protocol

import trio
from coredis.exceptions import AskError, TryAgainError

from ..._errors import BrokerError
from ..._history import History, Position
from .._base import BrokerState, StateListener
from . import blanks, framing, kept, present
from . import present_sharded as sharded
from .pending import Call, Pending
from .session import RedisSession
from .shards import Shards
from .slots import Address
from .supervisor import Settings
from .topology import ClusterSettings

logger = logging.getLogger("wsroute")

if TYPE_CHECKING:
    from coredis.connection import BaseConnection


def _redirection(exc: BrokerError, deadline: float) -> AskError | TryAgainError:
    """The redirection that ``exc`` reports, if it is one and there is time left to
    follow it; otherwise ``exc`` is raised again."""
    cause = exc.__cause__
    if isinstance(cause, AskError | TryAgainError) and trio.current_time() < deadline:
        return cause
    raise exc


class Cluster(Settings, ClusterSettings, Protocol):
    """What the session needs of its broker (``RedisClusterBroker`` is one)."""

    def _new_connection(self, address: Address | None = None) -> BaseConnection: ...


class ClusterSession(RedisSession):
    """One process's attachment to a Redis Cluster; made by
    :meth:`RedisClusterBroker.connect`. It is a :class:`RedisSession` whose attachment
    is one link per master (``shards.py``) and whose publishes go to the shard of
    their channel, sent again if the shard redirects them (``MOVED``, ``ASK``), until
    ``publish_timeout`` (see ``_run``)."""

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
        return sharded.channel(self._prefix, topic)

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
            start_by=self._start_by,
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
        """Queue ``item`` for the shard of its channel and return Redis' answer.

        Redirections are followed until ``publish_timeout``; nothing ran, so sending
        again is safe. ``ASK`` (the slot is migrating and none of the keys is at the
        owner) sends a copy to the node it names, right after ``ASKING``, without
        reading the topology (``_ask``). ``MOVED``, and ``TRYAGAIN`` (the keys are
        split between the two nodes meanwhile), read the topology again and send it
        to the owner. Fails at once if that shard is down (the others serve on).
        """
        self._check_open()
        deadline = trio.current_time() + self._cluster.publish_timeout
        channel = item.channel if not isinstance(item, Call) else item.keys[0]
        original = item
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
                redirect = _redirection(exc, deadline)
            if type(redirect) is AskError:
                # The node an ASK names imports the slot: a master we link to, during
                # a resharding. One we have no link to (a node added since the
                # topology was read, or an address spelled otherwise than in CLUSTER
                # SLOTS) is not asked: the item waits for the slot to move, as MOVED.
                target = shards.queue_at(Address(*redirect.node_addr))
                if target is not None:
                    try:
                        return await self._ask(target, original, what, deadline, abandon)
                    except BrokerError as exc:
                        _redirection(exc, deadline)
            await shards.redirected(channel, deadline)
            item = original.again()

    async def _ask(
        self,
        target: trio.MemorySendChannel[Pending],
        original: Pending,
        what: str,
        deadline: float,
        abandon: bool,
    ) -> object:
        """Send a copy of ``original`` to the node importing its slot (``target``),
        after ``ASKING``. Should that node answer ``TRYAGAIN`` (a script naming keys
        that it lacks, some or all: those of a topic new to both nodes), its missing
        keys are made blank there (``blanks.py``) and the copy is sent once more."""
        try:
            return await self._exchange(target, original.asked(), what, deadline, abandon)
        except BrokerError as exc:
            redirect = _redirection(exc, deadline)
            if not (isinstance(redirect, TryAgainError) and isinstance(original, Call)):
                raise
            if not original.blanks:
                raise
        for blank in original.blanks:
            await self._exchange(target, blanks.make_call(blank), what, deadline, abandon)
        return await self._exchange(target, original.asked(), what, deadline, abandon)

    async def publish_kept(self, topic: str, data: bytes, history: History) -> Position:
        """As ``RedisSession.publish_kept``, on the topic's shard (see ``_run``)."""
        what = "keeping an event in Redis"
        channel = self._channel(topic)
        seed = self._seed
        known = self._known
        call = kept.publish_call(
            self._prefix, topic, channel, data, history, seed, known, sharded=True
        )
        reply = await self._run(call, what)
        position = self._parse(lambda r: known.learn(topic, r, call.known), reply, what)
        if not kept.was_published(reply):
            # Kept after an ASK by the node importing the slot, which does not serve
            # the channel's subscribers yet: the event is published where they are.
            # Sent even if the caller stops waiting, as a kept event is published.
            framed = framing.frame(data, position)
            await self._run(Pending(channel, framed), what, abandon=False)
        return position

    # Presence: ``present_sharded.py`` says how its keys are cut to fit the slots.

    keeps_presence = True

    async def presence_add(
        self,
        topic: str,
        member: str,
        node: str,
        entry: bytes,
        *,
        join: bytes | None = None,
        leave: bytes | None = None,
    ) -> None:
        ttl = self._presence_ttl or present.UNBEATEN_TTL
        what = "adding a presence entry in Redis"
        members = self._present.setdefault(node, {}).get(topic)
        if not members:  # indexed first: a sweeper finds every topic with entries
            await self._run(sharded.index_call(self._prefix, node, topic, True, ttl), what)
            members = self._present[node].setdefault(topic, set())
        members.add(member)
        end = self._ends.get(node, b"")
        call = sharded.add_call(self._prefix, topic, member, node, entry, end, ttl, join, leave)
        unsent = self._parse(sharded.unsent_of, await self._run(call, what), what)
        await self._publish_unsent(topic, unsent, what)

    async def presence_remove(self, topic: str, member: str, node: str) -> bool:
        # Clean-up: sent even if the caller stops waiting, as on one Redis.
        what = "removing a presence entry from Redis"
        call = sharded.remove_call(self._prefix, topic, member, node)
        reply = await self._run(call, what, abandon=False)
        removed, unsent = self._parse(sharded.removed_of, reply, what)
        await self._publish_unsent(topic, unsent, what)
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
        ttl = self._presence_ttl or present.UNBEATEN_TTL
        call = sharded.list_call(self._prefix, topic, ttl)
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
        if not alive:  # perhaps swept meanwhile, its index emptied: indexed again
            calls += [
                sharded.index_call(self._prefix, node, topic, True, keep)
                for topic in self._present.get(node, ())
            ]
        await self._run_all(calls, what)
        return alive

    async def presence_sweep(self) -> list[tuple[str, bytes]]:
        """As ``BrokerSession.presence_sweep``, in resumable steps; a sweep that fails
        after removing entries returns them rather than raising (logged), leaving the
        rest to the next sweep.

        Raises:
            BrokerError: the cluster could not be reached before any entry was removed.
        """
        # Resumable, step by step (``present_sharded.py``): claims with a lease, and
        # each topic dropped from a node's index only once swept. A step not sent when
        # the caller stops waiting is abandoned: what it would have removed stays for
        # the next sweeper to report.
        what = "sweeping presence in Redis"
        prefix, token = self._prefix, secrets.token_hex(8).encode()
        lease = sharded.SWEEP_LEASE * self._cluster.publish_timeout
        reply = await self._run(sharded.dead_call(prefix), what)
        dead = self._parse(lambda r: [n.decode() for n in present.entries_of(r)], reply, what)
        removed: list[tuple[str, bytes]] = []
        try:
            for node in dead:
                await self._sweep_node(node, token, lease, removed)
        except BrokerError as exc:
            if not removed:
                raise
            # What was removed is reported; the rest waits for the next sweep.
            logger.warning("presence: a sweep stopped midway: %s", exc)
        return removed

    async def _sweep_node(
        self, node: str, token: bytes, lease: float, removed: list[tuple[str, bytes]]
    ) -> None:
        """Claim dead ``node`` and remove its entries topic by topic into ``removed``."""
        what, prefix = "sweeping presence in Redis", self._prefix
        ttl = self._presence_ttl or present.UNBEATEN_TTL
        reply = await self._run(sharded.claim_call(prefix, node, token, lease), what)
        topics = self._parse(sharded.topics_of, reply, what)
        if topics is None:
            return  # another sweeper's
        for topic in topics:
            call = sharded.sweep_topic_call(prefix, topic, node, ttl)
            entries, unsent = self._parse(sharded.swept_of, await self._run(call, what), what)
            removed.extend((topic, entry) for entry in entries)
            await self._publish_unsent(topic, unsent, what)
            call = sharded.swept_call(prefix, node, topic, token, lease)
            if not self._parse(present.flag_of, await self._run(call, what), what):
                return  # the lease ran out and another sweeper took the node over
        # The claim (and with it the emptied index) goes before the node: a sweeper
        # cut off between the two leaves a dead node with no topics, which the next
        # sweep forgets, rather than an index that nobody finds.
        await self._run(sharded.release_call(prefix, node, token), what)
        await self._run(sharded.forget_call(prefix, node), what)

    async def _publish_unsent(self, topic: str, events: list[bytes], what: str) -> None:
        """Publish the presence events that a script run after ``ASK`` returned
        (``present_sharded.py``) where the subscribers are, already escaped; sent even
        if the caller stops waiting, as the script would have published them."""
        for event in events:
            await self._run(Pending(self._channel(topic), event), what, abandon=False)

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
