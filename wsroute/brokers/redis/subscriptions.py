"""A link's subscriptions: which channels its subscriber connection holds, and its reader.

The session wants channels (refcounted per topic); :class:`Subscriptions` keeps the
subscriber connection's channels in line with that want: it sends ``SUBSCRIBE`` and
``UNSUBSCRIBE``, waits until Redis confirms each subscription (a channel counts as
subscribed only then), and reads the connection's pushes as fast as they come,
handing each message to the session without waiting, so Redis never has to buffer
output for us.

In sharded pub/sub (``dialect.py``) a node may also say that it no longer serves a
channel (a server-sent ``sunsubscribe`` when the slot migrated away, a ``MOVED`` reply
to an ``SSUBSCRIBE``): the channel is forgotten here and passed on, so that the
session looks for its new owner. It lives and dies with its link (``link.py``), which
ends it when the link breaks.
"""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence

import trio
from coredis.connection import BaseConnection
from coredis.exceptions import AskError, RedisError
from coredis.exceptions import ConnectionError as RedisConnectionError

from .dialect import Dialect, per_slot
from .failures import explain
from .slots import key_slot

#: The most channels named in one SUBSCRIBE command while resubscribing.
SUBSCRIBE_CHUNK = 512


class Subscriptions:
    """The channels of one subscriber connection, kept in line with what is wanted.

    Args:
        wanted: the channels the session currently wants (refcount above zero).
        deliver: called with ``(channel, data)`` for every message; must not block.
        timeout: seconds for Redis to confirm a subscription.
        dialect: classic or sharded pub/sub.
        on_dropped: called with channels that Redis says it no longer serves here
            (sharded pub/sub: their slot moved). They are forgotten; the caller
            finds their new owner. Without it, such news breaks the link.
        fail: called with why the link must end.
    """

    def __init__(
        self,
        *,
        wanted: Callable[[], Collection[bytes]],
        deliver: Callable[[bytes, bytes], None],
        timeout: float,
        dialect: Dialect,
        on_dropped: Callable[[Sequence[bytes]], None] | None,
        fail: Callable[[str], None],
    ) -> None:
        self._wanted = wanted
        self._deliver = deliver
        self._timeout = timeout
        self._dialect = dialect
        self._on_dropped = on_dropped
        self.fail = fail
        self._subscriber: BaseConnection | None = None
        #: Channels SUBSCRIBEd on this link's subscriber connection.
        self._live: set[bytes] = set()
        #: Per channel, one event per SUBSCRIBE sent and not yet confirmed.
        self._confirmations: dict[bytes, deque[trio.Event]] = {}
        #: Per channel, how many of our unsubscribes Redis has yet to confirm: any other
        #: unsubscribe push is Redis dropping the channel on its own.
        self._leaving: Counter[bytes] = Counter()
        #: Set by ``end``: the link broke, nothing more is sent.
        self.broken = False

    @property
    def subscribed(self) -> int:
        """How many channels this link has subscribed."""
        return len(self._live)

    def start(self, nursery: trio.Nursery, subscriber: BaseConnection) -> None:
        """Read ``subscriber``'s pushes (and, sharded, its refusals) in ``nursery``;
        channels may be subscribed from now on."""
        self._subscriber = subscriber
        nursery.start_soon(self._read, subscriber)
        if self._on_dropped is not None:
            nursery.start_soon(self._read_refusals, subscriber)

    def end(self) -> None:
        """The link broke (idempotent): send nothing more."""
        self.broken = True
        # Nobody waits for a confirmation that can no longer come.
        for events in self._confirmations.values():
            for event in events:
                event.set()
        self._confirmations.clear()

    async def subscribe(self, channels: Sequence[bytes]) -> None:
        """SUBSCRIBE ``channels`` and wait until Redis confirms each one.

        Returns early, without raising, if the link breaks meanwhile: the session
        still wants the channels, and the next link subscribes them.
        """
        if self.broken or self._subscriber is None:
            return
        events = []
        for channel in channels:
            event = trio.Event()
            self._confirmations.setdefault(channel, deque()).append(event)
            events.append(event)
        self._live.update(channels)
        try:
            if self._dialect.per_slot:
                for group in per_slot(channels):
                    self._subscriber.send_command(self._dialect.subscribe, *group)
            else:
                self._subscriber.send_command(self._dialect.subscribe, *channels)
        except RedisError as exc:
            self.fail(explain(exc))
            return
        await self._await_confirmations(events)

    async def confirmed(self, channels: Sequence[bytes]) -> None:
        """Wait until Redis confirmed the SUBSCRIBEs of ``channels`` that are still
        on their way (sent for another caller): a channel is subscribed only then.

        Returns early, without raising, if the link breaks meanwhile.
        """
        events = [queue[-1] for channel in channels if (queue := self._confirmations.get(channel))]
        if not events:
            await trio.lowlevel.checkpoint()
            return
        await self._await_confirmations(events)

    async def _await_confirmations(self, events: Sequence[trio.Event]) -> None:
        """Wait for Redis to confirm SUBSCRIBEs; break the link if it does not in time."""
        with trio.move_on_after(self._timeout):
            for event in events:
                await event.wait()
            return
        self.fail(f"Redis did not confirm SUBSCRIBE within {self._timeout:g} s")

    def unsubscribe(self, channel: bytes) -> None:
        """UNSUBSCRIBE ``channel`` without waiting: the session already ignores it."""
        if self.broken or self._subscriber is None or channel not in self._live:
            return
        self._live.discard(channel)
        self._leaving[channel] += 1
        try:
            self._subscriber.send_command(self._dialect.unsubscribe, channel)
        except RedisError as exc:
            self.fail(explain(exc))

    async def subscribe_wanted(self) -> None:
        """Subscribe what is wanted and not subscribed, unsubscribe the reverse."""
        # Loops because the session may want more channels while we wait for Redis.
        while True:
            wanted = set(self._wanted())
            for channel in self._live - wanted:
                self.unsubscribe(channel)
            missing = sorted(wanted - self._live)
            if not missing:
                return
            for start in range(0, len(missing), SUBSCRIBE_CHUNK):
                await self.subscribe(missing[start : start + SUBSCRIBE_CHUNK])

    async def _read(self, connection: BaseConnection) -> None:
        try:
            async with contextlib.aclosing(connection.push_messages) as messages:
                dialect = self._dialect
                async for push in messages:
                    kind = push[0]
                    if kind == dialect.message:
                        self._deliver(push[1], push[2])  # type: ignore[arg-type]
                    elif kind == dialect.subscribed:
                        channel: bytes = push[1]  # type: ignore[assignment]
                        events = self._confirmations.get(channel)
                        if events:
                            events.popleft().set()
                            if not events:
                                del self._confirmations[channel]
                    elif kind == dialect.unsubscribed:
                        self._unsubscribed(push[1])  # type: ignore[arg-type]
        except RedisConnectionError:
            self.fail("the subscribing connection was closed by Redis or the network")

    def _unsubscribed(self, channel: bytes) -> None:
        if self._leaving[channel] > 0:
            self._leaving[channel] -= 1
            if not self._leaving[channel]:
                del self._leaving[channel]
        elif channel in self._live:
            self._dropped([channel], "Redis ended the subscription")

    def _dropped(self, channels: list[bytes], why: str) -> None:
        """Redis no longer serves ``channels`` on this connection."""
        if self._on_dropped is None:
            self.fail(f"{why} to {channels[0]!r}")
            return
        for channel in channels:
            self._live.discard(channel)
            for event in self._confirmations.pop(channel, ()):
                event.set()
        self._on_dropped(channels)

    async def _read_refusals(self, connection: BaseConnection) -> None:
        """Replies to subscribe commands that are not pushes: errors. ``MOVED`` means
        the slot is served elsewhere (the topology was stale); others break the link."""
        try:
            async with contextlib.aclosing(connection.streamed_messages) as replies:
                async for reply in replies:
                    if isinstance(reply, AskError):
                        # An unsubscribe refused so will not be confirmed either.
                        for channel in list(self._leaving):
                            if channel not in self._live and key_slot(channel) == reply.slot_id:
                                del self._leaving[channel]
                        moved = [c for c in self._live if key_slot(c) == reply.slot_id]
                        if moved:
                            self._dropped(moved, "Redis moved the slot")
                    elif isinstance(reply, BaseException):
                        self.fail(f"Redis refused to subscribe: {explain(reply)}")
        except RedisConnectionError:
            self.fail("the subscribing connection was closed by Redis or the network")
