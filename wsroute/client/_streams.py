"""Bounded streams of what the client receives: events, and its state changes.

The socket reader never waits on a consumer: it appends to each matching stream
and goes on, so one slow ``async for`` loop cannot stall replies or other streams.
Each stream holds at most ``buffer`` items; when it is full its policy decides, and
the gap is never silent: ``"error"`` (the default) raises :class:`EventsLost` in
the consumer once it has read what was buffered, the drop policies count in
``dropped`` and log a warning.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

import trio

from .._errors import EventsLost

logger = logging.getLogger("wsroute.client")

T = TypeVar("T")


class Overflow(enum.Enum):
    """What a full stream does with the next item."""

    #: Stop taking items; the consumer gets :class:`EventsLost` after the buffered ones.
    ERROR = "error"
    #: Discard the oldest buffered item to make room.
    DROP_OLDEST = "drop_oldest"
    #: Discard the new item.
    DROP_NEWEST = "drop_newest"


class Stream(Generic[T]):
    """An async iterator over items the client pushes; use it in ``async for`` (or
    ``async with`` to end it early). It ends when the client closes."""

    __slots__ = ("_buffer", "_detach", "_ended", "_items", "_lost", "_policy", "_wakeup", "dropped")

    def __init__(self, buffer: int, policy: Overflow, detach: Callable[[Stream[T]], None]) -> None:
        self._detach: Callable[[Stream[T]], None] | None = None  # for __del__, whatever fails
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"a stream's buffer is an integer >= 1, not {buffer!r}")
        self._items: deque[T] = deque()
        self._buffer = buffer
        self._policy = Overflow(policy)
        self._detach = detach
        self._wakeup: trio.Event | None = None
        self._ended = False
        self._lost = False  # the ERROR policy tripped
        #: Items discarded by a drop policy.
        self.dropped = 0

    def push(self, item: T) -> None:
        """Called by the client; never waits."""
        if self._ended or self._lost:
            return
        if len(self._items) >= self._buffer:
            if self._policy is Overflow.ERROR:
                self._lost = True
                self._wake()
                return
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "a client stream is full (%d items): %d dropped so far (%s)",
                    self._buffer,
                    self.dropped,
                    self._policy.value,
                )
            if self._policy is Overflow.DROP_NEWEST:
                return
            self._items.popleft()
        self._items.append(item)
        self._wake()

    def end(self) -> None:
        """No more items: the consumer reads what is buffered, then stops."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def close(self) -> None:
        """Stop receiving; what is buffered is discarded."""
        self._ended = True
        self._items.clear()
        detach, self._detach = self._detach, None
        if detach is not None:
            detach(self)
        self._wake()

    def __del__(self) -> None:
        # A loop left with ``break`` drops the stream: stop feeding it.
        if self._detach is not None:
            self.close()

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self._lost:
                self._lost = False
                self.close()
                raise EventsLost(
                    f"more than {self._buffer} items were waiting for this stream: it"
                    " stopped taking them, so some were lost. Read faster, give it a"
                    " larger buffer, or a drop policy"
                )
            if self._ended:
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        return self._items.popleft()

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
