"""The Redis broker's session: what the app calls.

Publishes, and the history and presence calls, queue an item for whichever link is
up and wait for Redis' answer (``_run``); subscriptions are refcounted per topic and
what the link receives waits for the app in a bounded backlog (``backlog.py``). The
supervisor behind it, which keeps that link up and tells the app when Redis is lost,
is ``supervisor.py``.

History (``publish_kept``, ``read_history``) and presence (``presence_*``) run as Lua
scripts queued with the publishes, on the same connection; ``kept.py`` (with
``pages.py``, which reads history back) and ``present.py`` hold the scripts and the
key layouts, ``framing.py`` the framing of kept events on their channel and
``known.py`` what the session learnt of its topics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import trio

from ..._errors import BrokerClosed, BrokerError
from ..._history import History, Position, new_epoch
from .._base import BrokerMessage, BrokerSession, HistoryPage, StateListener
from . import framing, kept, pages, present
from .backlog import Backlog
from .failures import explain
from .known import Known
from .link import Link
from .pending import Call, Pending
from .supervisor import Attachment, Settings, Supervised

logger = logging.getLogger("wsroute")

T = TypeVar("T")


class RedisSession(Supervised, BrokerSession):
    """One process's attachment to Redis; made by :meth:`RedisBroker.connect`."""

    #: Whether kept events go out with ``SPUBLISH`` (sharded pub/sub, on a cluster).
    _sharded = False

    def __init__(self, broker: Settings, on_state: StateListener | None) -> None:
        super().__init__(broker, on_state)
        self._prefix = broker.prefix.encode()
        self._counts: dict[str, int] = {}
        self._backlog = Backlog(broker.backlog)
        #: The longest ttl of this session's heartbeats: its presence keys expire after
        #: ``present.KEEP_FACTOR`` times that.
        self._presence_ttl = 0.0
        #: What the history scripts make a topic's new epoch from, with Redis' clock.
        self._seed = new_epoch().encode()
        #: What this session learnt of its topics' history hashes.
        self._known = Known()

    @property
    def dropped(self) -> int:
        """Messages dropped because the consumer's backlog was full (``backlog.py``)."""
        return self._backlog.dropped

    @property
    def connected(self) -> bool:
        """Whether Redis is reachable and every topic is subscribed."""
        return self._connected

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("the Redis broker session is closed")

    def _channel(self, topic: str) -> bytes:
        return self._prefix + topic.encode()

    def _topic(self, channel: bytes) -> str:
        """The topic of a ``channel`` named by ``_channel``."""
        return channel[len(self._prefix) :].decode()

    # -- the BrokerSession interface -----------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data``; returns once Redis has accepted it.

        Fails at once while Redis is known to be unreachable, and after
        ``publish_timeout`` seconds if Redis does not answer. If cancelled, the
        message is published anyway if it had already been sent to Redis.

        Raises:
            BrokerError: Redis is unreachable, did not answer in time, or refused.
            BrokerClosed: the session is closed.
        """
        if data.startswith(framing.MARKED):
            data = framing.escape(data)
        await self._run(Pending(self._channel(topic), data), "publishing to Redis")

    keeps_history = True

    async def publish_kept(self, topic: str, data: bytes, history: History) -> Position:
        """Keep ``data`` in ``topic``'s history and publish it with its position, in
        one script that Redis runs atomically; in line with ``publish`` (FIFO).

        Blocks, fails and is cancelled as ``publish``: if cancelled once sent, the
        event is kept and published anyway.

        Raises:
            BrokerError: as ``publish``, or Redis refused or failed the script.
            BrokerClosed: the session is closed.
        """
        call = kept.publish_call(
            self._prefix,
            topic,
            self._channel(topic),
            data,
            history,
            self._seed,
            self._known,
            sharded=self._sharded,
        )
        reply = await self._run(call, "keeping an event in Redis")
        return self._parse(
            lambda r: self._known.learn(topic, r, call.known), reply, "keeping an event in Redis"
        )

    async def read_history(
        self, topic: str, history: History, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        """What Redis keeps of ``topic`` (see ``BrokerSession.read_history``), read in
        one script, in line with the publishes of this session. Blocks and fails as
        ``publish``.

        Raises:
            BrokerError: Redis is unreachable, did not answer in time, or failed.
            BrokerClosed: the session is closed.
        """
        seed, sharded = self._seed, self._sharded
        call = pages.read_call(self._prefix, topic, history, since, limit, seed, sharded=sharded)
        reply = await self._run(call, "reading history from Redis")
        return self._parse(lambda r: pages.page_of(topic, r), reply, "reading history from Redis")

    keeps_presence = True

    # Each presence call is one script of ``present.py`` (see ``BrokerSession`` for what
    # they promise), in line with the publishes; they block and fail as ``publish``.

    # The scripts publish the join and leave events they are given (``present.py``).
    publishes_presence_events = True

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
        call = present.add_call(self._prefix, topic, member, node, entry, ttl, join, leave)
        await self._run(call, "adding a presence entry in Redis")

    async def presence_remove(self, topic: str, member: str, node: str) -> bool:
        # Clean-up: once queued it goes out even if the caller stops waiting, so that
        # no entry outlives its connection.
        call = present.remove_call(self._prefix, topic, member, node)
        what = "removing a presence entry from Redis"
        return self._parse(present.flag_of, await self._run(call, what, abandon=False), what)

    async def presence_list(self, topic: str) -> list[bytes]:
        call = present.list_call(self._prefix, topic)
        what = "listing presence from Redis"
        return self._parse(present.entries_of, await self._run(call, what), what)

    async def presence_heartbeat(self, node: str, ttl: float) -> bool:
        self._presence_ttl = max(self._presence_ttl, ttl)
        call = present.heartbeat_call(self._prefix, node, ttl, self._presence_ttl)
        what = "beating a presence heartbeat in Redis"
        return self._parse(present.flag_of, await self._run(call, what), what)

    async def presence_sweep(self) -> list[tuple[str, bytes]]:
        call = present.sweep_call(self._prefix)
        what = "sweeping presence in Redis"
        return self._parse(present.removed_of, await self._run(call, what), what)

    async def _run(self, item: Pending, what: str, *, abandon: bool = True) -> object:
        """Queue ``item`` for the publisher, wait for Redis' answer and return it.

        A caller that stops waiting (cancelled, or past ``publish_timeout``) abandons
        an item not yet sent, unless ``abandon`` is False: then it is sent all the same.
        """
        self._check_open()
        if not self._connected:
            await trio.lowlevel.checkpoint()
            raise BrokerError(f"Redis at {self._broker.describe()} is unreachable (reconnecting)")
        deadline = trio.current_time() + self._broker.publish_timeout
        return await self._exchange(self._pending_send, item, what, deadline, abandon)

    async def _exchange(
        self,
        queue: trio.MemorySendChannel[Pending],
        item: Pending,
        what: str,
        deadline: float,
        abandon: bool,
    ) -> object:
        """Put ``item`` in ``queue`` for a publisher, wait until ``deadline`` for its
        answer and return it (see ``_run``)."""
        timeout = self._broker.publish_timeout
        try:
            with trio.move_on_at(deadline):
                await queue.send(item)
                await item.done.wait()
        except trio.ClosedResourceError:
            if self._closed:
                raise BrokerClosed("the Redis broker session is closed") from None
            raise BrokerError(f"{what} failed: the connection to Redis was lost") from None
        finally:
            if abandon and not item.done.is_set():
                item.abandoned = True
        if not item.done.is_set():
            raise BrokerError(f"Redis did not answer within {timeout:g} s ({what})")
        error = item.error
        if isinstance(error, BrokerClosed):
            raise error
        if error is not None:
            raise BrokerError(f"{what} failed: {explain(error)}") from error
        return item.reply if isinstance(item, Call) else None

    @staticmethod
    def _parse(parse: Callable[[object], T], reply: object, what: str) -> T:
        try:
            return parse(reply)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BrokerError(f"{what} failed: {exc}") from exc

    async def subscribe(self, topic: str) -> None:
        """Start receiving ``topic`` (refcounted).

        Returns once Redis confirmed the subscription. While Redis is unreachable it
        only records the topic, which is subscribed as soon as Redis is back.
        """
        await self.subscribe_many((topic,))

    async def subscribe_many(self, topics: Sequence[str]) -> None:
        """Subscribe to ``topics`` in one ``SUBSCRIBE`` (one round trip).

        Returns once Redis confirmed each topic, also one whose SUBSCRIBE another
        caller sent and still waits for: a recovering connection reads history only
        after that, so an event is in what it reads or delivered afterwards. While
        Redis is unreachable (or if the link breaks meanwhile) it returns once the
        topics are recorded: the next link subscribes them before it publishes or
        reads anything.
        """
        self._check_open()
        new: list[str] = []
        known: list[str] = []  # counted already: their SUBSCRIBE may be on its way
        for topic in topics:
            count = self._counts[topic] = self._counts.get(topic, 0) + 1
            (new if count == 1 else known).append(topic)
        link = self._link
        if link is None or not link.ready:
            await trio.lowlevel.checkpoint()
            return
        try:
            if new:
                await link.subscribe([self._channel(topic) for topic in new])
            if known or not new:
                await link.confirmed([self._channel(topic) for topic in known])
        except BaseException:
            for topic in topics:
                self._release(topic)  # cancelled or failed: the caller will not unsubscribe
            raise

    async def unsubscribe(self, topic: str) -> None:
        """Drop one subscription to ``topic``; delivery stops at once at zero."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        self._release(topic)

    async def __anext__(self) -> BrokerMessage:
        return await self._backlog.get()

    # -- internals -----------------------------------------------------------------------

    def _release(self, topic: str) -> None:
        count = self._counts.get(topic, 0)
        if count > 1:
            self._counts[topic] = count - 1
        elif count == 1:
            del self._counts[topic]
            if self._link is not None:
                self._link.unsubscribe(self._channel(topic))

    def _deliver(self, channel: bytes, data: bytes) -> None:
        """Called by the link's reader for each message: never blocks."""
        topic = self._topic(channel)
        if topic not in self._counts:
            return  # unsubscribed while the message was on its way
        position = None
        if data.startswith(framing.MARKED):
            try:
                data, position = framing.unframe(data)
            except ValueError as exc:
                logger.warning("Redis broker: dropped a message on topic %r: %s", topic, exc)
                return
        self._backlog.put(BrokerMessage(topic, data, position))

    def _new_link(self) -> Attachment:
        broker = self._broker
        return Link(
            broker._new_connection,
            wanted=lambda: [self._channel(topic) for topic in self._counts],
            deliver=self._deliver,
            pending=self._pending,
            timeout=broker.timeout,
            publish_timeout=broker.publish_timeout,
            health_check_interval=broker.health_check_interval,
        )

    def _close(self) -> None:
        super()._close()
        self._backlog.close()  # the app's iteration ends (closing twice is harmless)
