"""The supervisor behind a Redis session: what keeps its connection up.

The supervisor keeps one :class:`~.link.Link` up at a time. When it breaks it
logs one warning, tells the app (``on_state``), fails queued publishes at once,
reconnects with jittered exponential backoff, resubscribes every topic and logs the
recovery; after ``give_up_after`` seconds without Redis it raises
:class:`BrokerError` out of ``RedisBroker.connect()``, so the process exits instead
of serving clients who would receive nothing.

:class:`Supervised` holds that half of a session: the attachment, the queue of
publishes it sends, the state told to the app and the loop. ``session.py`` builds
the session (what the app calls) on top of it and says how to make an attachment.
"""

from __future__ import annotations

import abc
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from coredis.connection import BaseConnection

import trio

from ..._errors import BrokerClosed, BrokerError
from ..._util import collapse_exception_group
from .._base import BrokerState, StateListener
from .pending import Pending

logger = logging.getLogger("wsroute")


class Settings(Protocol):
    """What a session needs of its broker (``RedisBroker`` is one): its options and a
    way to open a connection to Redis."""

    prefix: str
    backlog: int
    timeout: float
    publish_timeout: float
    health_check_interval: float
    start_timeout: float
    give_up_after: float

    def describe(self) -> str: ...

    def _new_connection(self) -> BaseConnection: ...


class Attachment(Protocol):
    """What the supervisor keeps up: a :class:`~.link.Link` to one Redis, or the links
    to every master of a cluster (``shards.py``; ``shard_links.py`` mends one shard
    at a time within it). The supervisor makes, runs and drops it whole."""

    @property
    def ready(self) -> bool: ...

    @property
    def whole(self) -> bool:
        """Ready, and nothing it should serve is missing (a cluster may start, or
        come back, with a shard still down)."""
        ...

    @property
    def subscribed(self) -> int: ...

    async def run(self, on_ready: Callable[[], None]) -> str: ...

    def fail(self, reason: str) -> None: ...

    async def subscribe(self, channels: Sequence[bytes]) -> None: ...

    async def confirmed(self, channels: Sequence[bytes]) -> None: ...

    def unsubscribe(self, channel: bytes) -> None: ...


#: The most publishes queued for the publisher task; further publishers wait.
PENDING_LIMIT = 4096
#: Reconnection delays: from BACKOFF_BASE doubling up to BACKOFF_CAP seconds, jittered.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
#: A link that stayed up this long was a success: the backoff starts over.
STABLE_AFTER = 1.0


class Supervised(abc.ABC):
    """A session's attachment kept up: the loop, and the state it shares with the
    session's calls (read there on every publish, so plain attributes)."""

    def __init__(self, broker: Settings, on_state: StateListener | None) -> None:
        self._broker = broker
        self._on_state = on_state
        #: Publishes and scripts for whichever link is up; failed when it breaks.
        self._pending_send, self._pending = trio.open_memory_channel[Pending](PENDING_LIMIT)
        self._link: Attachment | None = None
        self._connected = False
        self._closed = False
        #: The state last reported to ``on_state`` (connected at start).
        self._state = BrokerState.CONNECTED
        #: Until the session started: when ``start_timeout`` runs out, if it is set.
        self._start_by: float | None = None

    @abc.abstractmethod
    def _new_link(self) -> Attachment:
        """A new attachment, not yet running, that takes from ``_pending``."""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """Supervise the session for the block: entered once connected (or raises),
        closed and its tasks cancelled on the way out. Both brokers open sessions so."""
        with collapse_exception_group():
            async with trio.open_nursery() as nursery:
                await nursery.start(self._supervise)
                try:
                    yield self
                finally:
                    self._close()
                    nursery.cancel_scope.cancel()

    async def _supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Keep a link up: reconnect with backoff, resubscribe, report state changes.

        Raises:
            BrokerError: no link within ``start_timeout`` at start (before reporting
                started), or none within ``give_up_after`` after a loss.
        """
        broker = self._broker
        where = broker.describe()
        backoff = _Backoff()
        started = False
        down_since = trio.current_time()
        up_since = down_since
        if broker.start_timeout > 0:
            self._start_by = down_since + broker.start_timeout

        def on_ready() -> None:
            nonlocal started, up_since
            assert self._link is not None
            # A cluster may start (or come back) with a shard down: lost until mended.
            self._connected = whole = self._link.whole
            now = up_since = trio.current_time()
            if not started:
                started = True
                self._start_by = None
                logger.info("connected to Redis at %s (channel prefix %r)", where, broker.prefix)
                if not whole:  # told before connect() returns, so that the app starts lost
                    self._notify(BrokerState.DISCONNECTED)
                task_status.started()
            elif whole:
                logger.info(
                    "reconnected to Redis at %s after %.1f s; resubscribed %d topic(s)",
                    where,
                    now - down_since,
                    self._link.subscribed,
                )
                self._notify(BrokerState.CONNECTED)

        while True:
            link = self._link = self._new_link()
            reason = await link.run(on_ready)
            self._link = None
            if self._closed:
                return  # closing ended the link: not an outage
            self._connected = False
            self._fail_pending(BrokerError(f"the connection to Redis was lost: {reason}"))
            now = trio.current_time()
            if link.ready:
                down_since = now
                if now - up_since >= STABLE_AFTER:
                    backoff.reset()
                logger.warning(
                    "lost the connection to Redis at %s (%s); reconnecting, giving up after %g s",
                    where,
                    reason,
                    broker.give_up_after,
                )
                self._notify(BrokerState.DISCONNECTED)
                limit = broker.give_up_after
            elif not started:
                limit = broker.start_timeout
                if now - down_since >= limit:
                    raise BrokerError(f"cannot connect to Redis at {where}: {reason}")
            else:
                limit = broker.give_up_after
                if now - down_since >= limit:
                    raise BrokerError(
                        f"lost the connection to Redis at {where} and could not reconnect"
                        f" within {limit:g} s: {reason}"
                    )
                logger.debug("still cannot reach Redis at %s: %s", where, reason)
            await trio.sleep(max(0.0, min(backoff.next(), down_since + limit - now)))

    def _fail_pending(self, error: BaseException) -> None:
        while True:
            try:
                self._pending.receive_nowait().finish(error)
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def _notify(self, state: BrokerState) -> None:
        if state is self._state:  # told once, however many ways it was noticed
            return
        self._state = state
        if self._on_state is None:
            return
        try:
            self._on_state(state)
        except Exception:
            logger.exception("the broker state listener failed on %s", state.value)

    def _close(self) -> None:
        """End the link and fail what waits for it; the session extends it to close
        what it holds for the app."""
        if self._closed:
            return
        self._closed = True
        self._connected = False
        if self._link is not None:
            self._link.fail("the session was closed")
        self._pending_send.close()
        self._fail_pending(BrokerClosed("the Redis broker session is closed"))
        self._pending.close()


class _Backoff:
    """Exponential reconnection delays with jitter, so that many processes spread out."""

    def __init__(self) -> None:
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self) -> float:
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(self._attempt, 16))
        self._attempt += 1
        return random.uniform(delay / 2, delay)
