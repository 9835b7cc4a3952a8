"""A connection's bounded outbox and the named policies for when it is full.

Everything the server sends to one client (replies, events, pushes) goes through its
outbox. Producers never wait: ``put`` is synchronous, so a fan-out to thousands of
connections is a loop of puts and one slow client can never delay the others. When
the outbox is empty and the socket idle, ``put`` writes the frame at once (see
``_server.writer.Writer.write_now``); otherwise the frame is queued and the
connection's single writer task, started on first need, drains the queue in order.
When a client reads slower than it is sent to, its outbox fills and the policy
decides; the memory bound per connection is ``outbox_size`` frames (plus at most one
frame the kernel took only in part).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .._config import SlowConsumerPolicy
from .writer import PENDING, WRITTEN

if TYPE_CHECKING:
    from .._wire.frames import Outgoing
    from .instruments import OutboxMeter


class Outbox:
    """A bounded FIFO of encoded frames with one consumer.

    Args:
        maxsize: the most frames held at once.
        policy: what a ``put`` on a full outbox does.
        on_overflow: called (synchronously) once when the ``CLOSE`` policy trips.
            ``release`` drops it.
        meter: the app's counters of dropped frames and slow-consumer closes.
    """

    __slots__ = (
        "_closed",
        "_flush",
        "_frames",
        "_lot",
        "_meter",
        "_on_overflow",
        "_room",
        "_spawn",
        "_write_now",
        "dropped",
        "maxsize",
        "policy",
    )

    def __init__(
        self,
        maxsize: int,
        policy: SlowConsumerPolicy,
        on_overflow: Callable[[], None] | None,
        meter: OutboxMeter | None = None,
    ) -> None:
        self.maxsize = maxsize
        self._meter = meter
        self.policy = policy
        self.dropped = 0  # frames discarded by the policy or after close, for stats
        self._frames: list[Outgoing] = []  # a list: lighter than a deque when idle
        self._lot: trio.lowlevel.ParkingLot | None = None  # with the first wait
        self._room: trio.lowlevel.ParkingLot | None = None  # producers waiting for room
        self._on_overflow = on_overflow
        self._closed = False
        self._flush = False  # the socket holds bytes the writer must write first
        self._write_now: Callable[[Outgoing], int] | None = None
        self._spawn: Callable[[], None] | None = None

    def attach(
        self, write_now: Callable[[Outgoing], int] | None, spawn: Callable[[], None]
    ) -> None:
        """Connect the socket: ``write_now`` bypasses the queue when it can, and
        ``spawn`` starts the writer task the first time one is needed."""
        self._write_now = write_now
        self._spawn = spawn
        if self._frames or self._closed:
            self._wake()

    def detach(self) -> None:
        """The writer's nursery is gone: stop writing directly or spawning."""
        self._write_now = None
        self._spawn = None

    def release(self) -> None:
        """The connection is over: drop the overflow callback, the outbox's one
        reference back to its owner besides those ``detach`` drops."""
        self._on_overflow = None

    def _wake(self) -> None:
        if self._lot:  # None or empty: the writer is not waiting
            self._lot.unpark()
        elif self._spawn is not None:
            spawn, self._spawn = self._spawn, None
            spawn()

    def request_flush(self) -> None:
        """The socket has bytes pending (a partial write, a ping): have them written."""
        self._flush = True
        self._wake()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, frame: Outgoing) -> bool:
        """Write or queue ``frame`` without waiting; return whether it was taken."""
        if self._closed:
            self.dropped += 1
            return False
        frames = self._frames
        if not frames and self._write_now is not None:
            done = self._write_now(frame)
            if done == WRITTEN:
                return True
            if done == PENDING:
                self.request_flush()
                return True
        if len(frames) >= self.maxsize:
            meter = self._meter
            if self.policy is SlowConsumerPolicy.DROP_NEWEST:
                self.dropped += 1
                if meter is not None:
                    meter.dropped.value += 1
                return False
            if self.policy is SlowConsumerPolicy.DROP_OLDEST:
                frames.pop(0)  # at most maxsize long
                self.dropped += 1
                if meter is not None:
                    meter.dropped.value += 1
            else:
                # The client will be disconnected: free the memory now.
                self.dropped += len(frames) + 1
                if meter is not None:
                    meter.dropped.value += len(frames) + 1
                    meter.closes.value += 1
                self._frames = []
                self.close()
                if self._on_overflow is not None:
                    self._on_overflow()
                return False
        frames.append(frame)
        if len(frames) == 1:
            self._wake()
        return True

    async def wait_below(self, level: int) -> None:
        """Wait until at most ``level`` frames are queued, or the outbox is closed: for
        the rare producer that must not lose a frame (recovery)."""
        while len(self._frames) > level and not self._closed:
            if self._room is None:
                self._room = trio.lowlevel.ParkingLot()
            await self._room.park()

    def close(self) -> None:
        """Refuse further frames; the writer still drains what is queued."""
        self._closed = True
        if self._room is not None:
            self._room.unpark_all()
        if self._lot is not None:
            self._lot.unpark_all()
        if self._spawn is not None:
            self._wake()  # so that a writer exists to report the drain

    def discard(self) -> None:
        """Close and drop everything queued (the peer is gone). Starts no writer:
        with nothing to write, only one already waiting needs to know."""
        self.dropped += len(self._frames)
        self._frames = []
        self._closed = True
        self._flush = False
        if self._room is not None:
            self._room.unpark_all()
        if self._lot is not None:
            self._lot.unpark_all()

    async def get_batch(self) -> list[Outgoing] | None:
        """Wait for frames (or a flush) and take all that are queued, oldest first.

        Returns ``None`` once the outbox is closed and drained.
        Cancellation leaves the queue untouched.
        """
        while not self._frames and not self._flush:
            if self._closed:
                return None
            if self._lot is None:
                self._lot = trio.lowlevel.ParkingLot()
            await self._lot.park()
        self._flush = False
        batch, self._frames = self._frames, []
        if self._room:  # None or empty: nobody waits for room
            self._room.unpark_all()
        return batch
