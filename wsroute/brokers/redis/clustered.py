"""The Redis Cluster broker's session: the Redis session, attached to every master
through ``shards.py``, with channels named for their slot and publishes routed to
their shard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio
from coredis.exceptions import AskError

from ..._errors import BrokerError, PresenceUnsupported
from .._base import StateListener
from .pending import Call, Pending
from .session import RedisSession, Settings
from .shards import ClusterSettings, Shards
from .slots import Address

if TYPE_CHECKING:
    from coredis.connection import BaseConnection


class Cluster(Settings, ClusterSettings, Protocol):
    """What the session needs of its broker (``RedisClusterBroker`` is one)."""

    def _new_connection(self, address: Address | None = None) -> BaseConnection: ...


NO_PRESENCE = (
    "the Redis Cluster broker keeps no presence yet: a topic's presence keys and a node's"
    " cannot share a slot; use RedisBroker, or an app without presence"
)


class ClusterSession(RedisSession):
    """One process's attachment to a Redis Cluster; made by
    :meth:`RedisClusterBroker.connect`. It is a :class:`RedisSession` whose attachment
    is one link per master (``shards.py``) and whose publishes go to the shard of
    their channel, sent again once if the shard redirects them (``MOVED``)."""

    _sharded = True
    #: Topics on different shards travel on different connections.
    orders_across_topics = False

    def __init__(self, broker: Cluster, on_state: StateListener | None) -> None:
        super().__init__(broker, on_state)
        self._cluster = broker
        self._shards: Shards | None = None

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
        )
        return self._shards

    async def _run(self, item: Pending, what: str, *, abandon: bool = True) -> object:
        """Queue ``item`` for the shard of its channel and return Redis' answer; if the
        shard says the slot moved, read the topology again and send it there, until
        ``publish_timeout``."""
        self._check_open()
        deadline = trio.current_time() + self._cluster.publish_timeout
        channel = item.channel if not isinstance(item, Call) else item.keys[0]
        while True:
            shards = self._shards
            queue = shards.queue_for(channel) if shards is not None else None
            if not self._connected or shards is None or queue is None:
                await trio.lowlevel.checkpoint()
                raise BrokerError(
                    f"Redis Cluster at {self._cluster.describe()} has no reachable master for"
                    f" {channel!r} (reconnecting)"
                )
            try:
                return await self._exchange(queue, item, what, deadline, abandon)
            except BrokerError as exc:
                if not isinstance(exc.__cause__, AskError) or trio.current_time() >= deadline:
                    raise
            await shards.redirected(deadline)
            item = item.again()

    # Presence keys of a topic and of a node cannot share a slot: not on a cluster yet.
    keeps_presence = False

    async def presence_add(self, topic: str, member: str, node: str, entry: bytes) -> None:
        raise PresenceUnsupported(NO_PRESENCE)

    async def presence_remove(self, topic: str, member: str, node: str) -> bool:
        raise PresenceUnsupported(NO_PRESENCE)

    async def presence_list(self, topic: str) -> list[bytes]:
        raise PresenceUnsupported(NO_PRESENCE)

    async def presence_heartbeat(self, node: str, ttl: float) -> bool:
        raise PresenceUnsupported(NO_PRESENCE)

    async def presence_sweep(self) -> list[tuple[str, bytes]]:
        raise PresenceUnsupported(NO_PRESENCE)
