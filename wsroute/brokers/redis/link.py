"""One live attachment to Redis: a publishing and a subscribing connection.

A :class:`Link` is made, used and dropped as a unit by the session's supervisor
(``supervisor.py``): when either connection fails, Redis stops answering, or a
subscription is not confirmed, the whole link ends and the supervisor builds a new
one. That keeps one simple state per session — connected or not — and makes
"resubscribe everything" the only recovery path there is.

The link owns three background jobs:

- the **publisher** (``publisher.py``) takes publishes queued by any number of
  handlers and writes them as one pipeline (many ``PUBLISH`` commands in one write,
  one round trip), then completes each caller once Redis has answered its command.
  Script calls (a :class:`Call`: keeping or reading history) queue in the same line,
  so they keep their place among the publishes;
- the **reader** (``subscriptions.py``, with the link's subscription bookkeeping)
  drains the subscriber connection's push messages as fast as they come and hands
  each to the session without waiting, so Redis never has to buffer output for us;
- the **health check** pings both connections while they are idle, because a Redis
  that hangs, or a network that silently drops packets, closes no socket.

This module holds what ties them together: connecting, starting the jobs, the health
check, and ending the whole link at the first failure.

The same link speaks classic pub/sub (``SUBSCRIBE``/``PUBLISH``, broadcast to a whole
Redis) or sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``, Redis 7: one link per master of
a cluster, each for the channels of the slots it serves), as its :class:`Dialect`
says. A sharded link also hears a node say that it no longer serves a channel (a
server-sent ``sunsubscribe`` when the slot migrated away, a ``MOVED`` reply to an
``SSUBSCRIBE``) and passes that on, so that the session looks for the new owner.

coredis is imported here at module level; ``redis.py`` imports the session (and so
this module) inside a guard, so that wsroute works without the redis extra.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import trio
from coredis.connection import BaseConnection
from coredis.exceptions import RedisError

from .dialect import CLASSIC, Dialect
from .failures import explain
from .pending import Pending
from .publisher import Publisher
from .subscriptions import Subscriptions


class Link:
    """A publisher and a subscriber connection that live and die together.

    Args:
        make_connection: returns a new, unconnected coredis connection.
        wanted: the channels the session currently wants (refcount above zero).
        deliver: called with ``(channel, data)`` for every message; must not block.
        pending: publishes queued by the session, consumed here in order.
        timeout: seconds for connecting, for a subscription to be confirmed and for
            a PING to be answered.
        publish_timeout: seconds Redis may take to answer one PUBLISH.
        health_check_interval: seconds between PINGs on each connection.
        dialect: classic or sharded pub/sub.
        on_dropped: called with channels that Redis says it no longer serves here
            (sharded pub/sub: their slot moved). The link forgets them; the caller
            finds their new owner. Without it, such news breaks the link.
    """

    def __init__(
        self,
        make_connection: Callable[[], BaseConnection],
        *,
        wanted: Callable[[], Collection[bytes]],
        deliver: Callable[[bytes, bytes], None],
        pending: trio.MemoryReceiveChannel[Pending],
        timeout: float,
        publish_timeout: float,
        health_check_interval: float,
        dialect: Dialect = CLASSIC,
        on_dropped: Callable[[Sequence[bytes]], None] | None = None,
    ) -> None:
        self._make_connection = make_connection
        self._timeout = timeout
        self._health_check_interval = health_check_interval
        self._subscriptions = Subscriptions(
            wanted=wanted,
            deliver=deliver,
            timeout=timeout,
            dialect=dialect,
            on_dropped=on_dropped,
            fail=self.fail,
        )
        self._publisher = Publisher(
            pending, publish_timeout=publish_timeout, dialect=dialect, fail=self.fail
        )
        self._cancel_scope: trio.CancelScope | None = None
        self._reason: str | None = None
        self.ready = False

    @property
    def broken(self) -> bool:
        return self._reason is not None

    @property
    def whole(self) -> bool:
        """Ready: one Redis serves everything or nothing."""
        return self.ready

    @property
    def subscribed(self) -> int:
        """How many channels this link has subscribed."""
        return self._subscriptions.subscribed

    async def run(self, on_ready: Callable[[], None]) -> str:
        """Connect, subscribe every wanted channel, call ``on_ready``, serve until broken.

        Returns why the link ended (check :attr:`ready` to tell whether it ever
        worked). A failure to connect or to subscribe is returned too, not raised.
        """
        async with trio.open_nursery() as nursery:
            self._cancel_scope = nursery.cancel_scope
            publisher = self._make_connection()
            subscriber = self._make_connection()
            try:
                with trio.fail_after(self._timeout):
                    await nursery.start(self._hold, publisher, "publishing")
                    await nursery.start(self._hold, subscriber, "subscribing")
                    self._subscriptions.start(nursery, subscriber)
                    await self._subscriptions.subscribe_wanted()
            except trio.TooSlowError:
                self.fail(f"no answer from Redis within {self._timeout:g} s")
            except (RedisError, OSError) as exc:
                self.fail(explain(exc))
            if not self.broken:
                nursery.start_soon(self._publisher.run, publisher)
                nursery.start_soon(self._check_health, publisher, subscriber)
                self.ready = True
                on_ready()
        return self._reason or "the connection to Redis was closed"

    def fail(self, reason: str) -> None:
        """End the link (idempotent); the first reason given is the one reported."""
        if self._reason is None:
            self._reason = reason
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
        self._subscriptions.end()

    # -- subscriptions (``subscriptions.py``) ------------------------------------------

    async def subscribe(self, channels: Sequence[bytes]) -> None:
        """SUBSCRIBE ``channels`` and wait until Redis confirms each one.

        Returns early, without raising, if the link breaks meanwhile: the session
        still wants the channels, and the next link subscribes them.
        """
        await self._subscriptions.subscribe(channels)

    async def confirmed(self, channels: Sequence[bytes]) -> None:
        """Wait until Redis confirmed the SUBSCRIBEs of ``channels`` that are still
        on their way (sent for another caller): a channel is subscribed only then.

        Returns early, without raising, if the link breaks meanwhile.
        """
        await self._subscriptions.confirmed(channels)

    def unsubscribe(self, channel: bytes) -> None:
        """UNSUBSCRIBE ``channel`` without waiting: the session already ignores it."""
        self._subscriptions.unsubscribe(channel)

    async def resync(self) -> None:
        """Subscribe what is wanted and not subscribed, unsubscribe the reverse: after
        the wanted channels changed other than by ``subscribe`` (their slot moved)."""
        if self.ready and not self.broken:
            await self._subscriptions.subscribe_wanted()

    # -- background jobs ---------------------------------------------------------------

    async def _hold(
        self,
        connection: BaseConnection,
        role: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # coredis' run() reports started once connected and handshaken, and returns
        # when the connection is lost.
        await connection.run(task_status=task_status)
        self.fail(f"the {role} connection was closed by Redis or the network")

    async def _check_health(self, *connections: BaseConnection) -> None:
        while True:
            await trio.sleep(self._health_check_interval)
            for connection in connections:
                try:
                    await connection.create_request(b"PING", timeout=self._timeout)
                except TimeoutError:
                    self.fail(f"Redis did not answer PING within {self._timeout:g} s")
                    return
                except RedisError as exc:
                    self.fail(explain(exc))
                    return
