"""A connection's bounded outbox and the named policies for when it is full.

Everything the server sends to one client (replies, events, pushes) goes through its
outbox, drained in order by that connection's single writer task. Producers never
wait: ``put`` is synchronous, so a fan-out to thousands of connections is a loop of
appends and one slow client can never delay the others. When a client reads slower
than it is sent to, its outbox fills and the policy decides; the memory bound per
connection is ``outbox_size`` frames.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

import trio


class SlowConsumerPolicy(enum.Enum):
    """What happens to a connection whose outbox is full."""

    #: Close the connection with 1008 "slow consumer" (the default): the client
    #: reconnects and resyncs instead of silently missing messages.
    CLOSE = "close"
    #: Discard the oldest queued frame to make room (the client misses old news).
    DROP_OLDEST = "drop_oldest"
    #: Discard the frame being added (the client misses new news).
    DROP_NEWEST = "drop_newest"


class Outbox:
    """A bounded FIFO of encoded frames with one consumer.

    Args:
        maxsize: the most frames held at once.
        policy: what a ``put`` on a full outbox does.
        on_overflow: called (synchronously) once when the ``CLOSE`` policy trips.
    """

    __slots__ = ("_closed", "_frames", "_lot", "_on_overflow", "dropped", "maxsize", "policy")

    def __init__(
        self,
        maxsize: int,
        policy: SlowConsumerPolicy,
        on_overflow: Callable[[], None],
    ) -> None:
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0  # frames discarded by the policy or after close, for stats
        self._frames: deque[str | bytes] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._on_overflow = on_overflow
        self._closed = False

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, frame: str | bytes) -> bool:
        """Queue ``frame`` without waiting; return whether it was queued."""
        if self._closed:
            self.dropped += 1
            return False
        frames = self._frames
        if len(frames) >= self.maxsize:
            if self.policy is SlowConsumerPolicy.DROP_NEWEST:
                self.dropped += 1
                return False
            if self.policy is SlowConsumerPolicy.DROP_OLDEST:
                frames.popleft()
                self.dropped += 1
            else:
                # The client will be disconnected: free the memory now.
                self.dropped += len(frames) + 1
                frames.clear()
                self.close()
                self._on_overflow()
                return False
        frames.append(frame)
        if self._lot:
            self._lot.unpark()
        return True

    def close(self) -> None:
        """Refuse further frames; the writer still drains what is queued."""
        self._closed = True
        self._lot.unpark_all()

    def discard(self) -> None:
        """Close and drop everything queued (the peer is gone)."""
        self.dropped += len(self._frames)
        self._frames.clear()
        self.close()

    async def get_batch(self) -> list[str | bytes]:
        """Wait for frames and take all that are queued, oldest first.

        Returns an empty list once the outbox is closed and drained.
        Cancellation leaves the queue untouched.
        """
        while not self._frames:
            if self._closed:
                return []
            await self._lot.park()
        batch = list(self._frames)
        self._frames.clear()
        return batch
