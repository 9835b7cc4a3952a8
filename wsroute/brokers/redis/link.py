"""One live attachment to Redis: a publishing and a subscribing connection.

A :class:`Link` is made, used and dropped as a unit by the session's supervisor
(``redis.py``): when either connection fails, Redis stops answering, or a
subscription is not confirmed, the whole link ends and the supervisor builds a new
one. That keeps one simple state per session — connected or not — and makes
"resubscribe everything" the only recovery path there is.

The link owns three background jobs:

- the **publisher** takes publishes queued by any number of handlers and writes them
  as one pipeline (many ``PUBLISH`` commands in one write, one round trip), then
  completes each caller once Redis has answered its command. Script calls (a
  :class:`Call`: keeping or reading history) queue in the same line, so they keep
  their place among the publishes;
- the **reader** drains the subscriber connection's push messages as fast as they
  come and hands each to the session without waiting, so Redis never has to buffer
  output for us;
- the **health check** pings both connections while they are idle, because a Redis
  that hangs, or a network that silently drops packets, closes no socket.

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

import contextlib
import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from typing import Any

import trio
from coredis.commands import CommandRequest
from coredis.connection import BaseConnection
from coredis.exceptions import AskError, NoScriptError, RedisError, ResponseError
from coredis.exceptions import ConnectionError as RedisConnectionError

from .dialect import CLASSIC, Dialect, per_slot
from .pending import Call, Script, asking
from .pending import Pending as Pending  # what the session queues, and the tests
from .slots import key_slot

_QUIET = frozenset(("Connection closed unexpectedly!", "Connection attempt failed unexpectedly!"))


class _QuietConnectionLoss(logging.Filter):
    """Drop coredis' traceback for a lost or refused connection: the session logs it in
    one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _QUIET


logging.getLogger("coredis").addFilter(_QuietConnectionLoss())

#: The most publishes written as one pipeline, and their most bytes together.
MAX_BATCH = 512
MAX_BATCH_BYTES = 1 << 20
#: The most channels named in one SUBSCRIBE command while resubscribing.
SUBSCRIBE_CHUNK = 512


def explain(exc: BaseException) -> str:
    """``exc`` and its root cause in one line, e.g. "... to 127.0.0.1:1: Connection refused"."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(exc) or type(exc).__name__
    if root is not exc:
        detail = os.strerror(root.errno) if isinstance(root, OSError) and root.errno else str(root)
        text = f"{text}: {detail or type(root).__name__}"
    return text


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
        self._wanted = wanted
        self._deliver = deliver
        self._pending = pending
        self._timeout = timeout
        self._publish_timeout = publish_timeout
        self._health_check_interval = health_check_interval
        self._dialect = dialect
        self._on_dropped = on_dropped
        self._subscriber: BaseConnection | None = None
        #: Channels SUBSCRIBEd on this link's subscriber connection.
        self._live: set[bytes] = set()
        #: Per channel, one event per SUBSCRIBE sent and not yet confirmed.
        self._confirmations: dict[bytes, deque[trio.Event]] = {}
        #: Per channel, how many of our unsubscribes Redis has yet to confirm: any other
        #: unsubscribe push is Redis dropping the channel on its own.
        self._leaving: Counter[bytes] = Counter()
        self._cancel_scope: trio.CancelScope | None = None
        self._reason: str | None = None
        #: Scripts (by SHA1) that a SCRIPT LOAD sent on the publishing connection.
        self._loaded: set[bytes] = set()
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
        return len(self._live)

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
                    self._subscriber = subscriber
                    nursery.start_soon(self._read, subscriber)
                    if self._on_dropped is not None:
                        nursery.start_soon(self._read_refusals, subscriber)
                    await self._subscribe_wanted()
            except trio.TooSlowError:
                self.fail(f"no answer from Redis within {self._timeout:g} s")
            except (RedisError, OSError) as exc:
                self.fail(explain(exc))
            if not self.broken:
                nursery.start_soon(self._publish, publisher)
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
        # Nobody waits for a confirmation that can no longer come.
        for events in self._confirmations.values():
            for event in events:
                event.set()
        self._confirmations.clear()

    # -- subscriptions -----------------------------------------------------------------

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

    async def resync(self) -> None:
        """Subscribe what is wanted and not subscribed, unsubscribe the reverse: after
        the wanted channels changed other than by ``subscribe`` (their slot moved)."""
        if self.ready and not self.broken:
            await self._subscribe_wanted()

    async def _subscribe_wanted(self) -> None:
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

    async def _publish(self, connection: BaseConnection) -> None:
        """Write queued publishes as pipelines, one batch in flight at a time.

        Everything queued while a batch is on its way goes out as the next batch, so
        the batch size grows with the load and a publish waits about one round trip.
        """
        batch: list[Pending] = []
        try:
            while True:
                batch = self._take_batch(await self._pending.receive())
                if batch and (reason := await self._send(connection, batch)) is not None:
                    self.fail(reason)
                    return
        finally:
            lost = RedisConnectionError("the connection to Redis was lost")
            for item in batch:
                item.finish(lost)

    async def _send(self, connection: BaseConnection, batch: list[Pending]) -> str | None:
        """Send ``batch`` as one pipeline and complete each item.

        A script not yet loaded on this connection is loaded by a ``SCRIPT LOAD``
        just before its first ``EVALSHA``, in the same pipeline: Redis runs them in
        order, so no call meets ``NOSCRIPT`` and every command keeps its place. Only
        a script flushed from Redis meanwhile (``SCRIPT FLUSH``) does: that call is
        run again with ``EVAL``, after the rest of its batch. An item sent after an
        ``ASK`` redirection gets its ``ASKING`` right before it, after any load, as the
        node honours ``ASKING`` for the next command only.

        Returns why the connection can no longer be trusted, if it cannot.
        """
        commands: list[CommandRequest[Any]] = []
        # Per command, whose it is: a Script for its load, None for an ASKING.
        owners: list[Pending | Script | None] = []
        for item in batch:
            if isinstance(item, Call):
                sha = item.script.sha
                if sha not in self._loaded:
                    self._loaded.add(sha)
                    commands.append(item.script.load())
                    owners.append(item.script)
            if item.asking:  # right before its command: ASKING counts for one command
                commands.append(asking())
                owners.append(None)
            if isinstance(item, Call):
                commands.append(item.evaluate(loaded=True))
            else:
                commands.append(item.request(self._dialect.publish))
            owners.append(item)
        try:
            replies = await connection.create_request_batch(commands, timeout=self._publish_timeout)
        except RedisError as exc:
            return explain(exc)
        reason = None
        unloaded: list[Call] = []
        for owner, reply in zip(owners, replies, strict=True):
            if owner is None:  # ASKING: its command's reply tells what came of it
                continue
            if isinstance(owner, Script):
                if isinstance(reply, BaseException):  # its EVALSHA failed too: try again next time
                    self._loaded.discard(owner.sha)
            elif isinstance(reply, NoScriptError) and isinstance(owner, Call):
                self._loaded.discard(owner.script.sha)
                unloaded.append(owner)
            else:
                reason = self._complete(owner, reply) or reason
        for call in unloaded:
            if call.abandoned:  # its caller gave up: do not run it late
                call.finish(TimeoutError("the script was not run in time"))
                continue
            commands = [asking()] if call.asking else []
            commands.append(call.evaluate(loaded=False))
            try:
                *_, reply = await connection.create_request_batch(
                    commands, timeout=self._publish_timeout
                )
            except RedisError as exc:
                return explain(exc)
            reason = self._complete(call, reply) or reason
        return reason

    def _complete(self, item: Pending, reply: object) -> str | None:
        """Finish ``item`` with Redis' ``reply``; say why the connection is no longer
        trusted, if the reply means that."""
        if not isinstance(reply, BaseException):
            if isinstance(item, Call):
                item.reply = reply
            item.finish()
            return None
        item.finish(reply)
        if isinstance(reply, TimeoutError):
            return f"Redis did not answer within {self._publish_timeout:g} s"
        if not isinstance(reply, ResponseError):  # a refusal (e.g. ACL) fails only its item
            return explain(reply)
        return None

    def _take_batch(self, first: Pending) -> list[Pending]:
        """``first`` and whatever else is queued, up to the batch limits."""
        batch = [] if first.abandoned else [first]
        size = first.size
        while len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
            try:
                item = self._pending.receive_nowait()
            except trio.WouldBlock:
                break
            if not item.abandoned:
                batch.append(item)
                size += item.size
        return batch

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
