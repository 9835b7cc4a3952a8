"""One timer task that pings every connection of a runtime.

A task per connection that sleeps between pings costs memory for every idle
connection (its coroutine frames, cancel scope and trio bookkeeping) and a wake-up for
each ping. Instead each session is an entry in a heap keyed by when it next needs
attention, and one task sleeps until the earliest. A session's ``heartbeat(now)``
sends a ping or checks that the last one was answered, and says when to come back.
A session that ends calls ``forget`` so that the heap never keeps it alive; its entry
is dropped when due, or sooner when ended entries are the majority.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio


class Beating(Protocol):
    def heartbeat(self, now: float) -> float | None: ...


#: A watched session; ``[None]`` once it ended.
Handle = list[Beating | None]


class Heartbeat:
    """Calls ``heartbeat`` on each watched session when it asks to be called."""

    __slots__ = ("_ended", "_heap", "_interval", "_order", "_scope")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._heap: list[tuple[float, int, Handle]] = []
        self._order = itertools.count()  # ties never compare handles
        self._scope: trio.CancelScope | None = None
        self._ended = 0

    def __len__(self) -> int:
        """Sessions watched (ended ones not yet dropped included)."""
        return len(self._heap)

    def watch(self, session: Beating) -> Handle:
        """Ping ``session`` every ``interval`` until its ``heartbeat`` returns None
        or it is forgotten."""
        handle: Handle = [session]
        due = trio.current_time() + self._interval
        heapq.heappush(self._heap, (due, next(self._order), handle))
        scope = self._scope
        if scope is not None and due < scope.deadline:
            scope.deadline = due
        return handle

    def forget(self, handle: Handle) -> None:
        """The session ended: release it now."""
        if handle[0] is None:
            return
        handle[0] = None
        self._ended += 1
        heap = self._heap
        if self._ended > 256 and self._ended * 2 > len(heap):
            heap[:] = [entry for entry in heap if entry[2][0] is not None]
            heapq.heapify(heap)
            self._ended = 0

    async def run(self) -> None:
        heap = self._heap
        while True:
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._scope:
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, handle = heapq.heappop(heap)
                session = handle[0]
                if session is None:
                    self._ended -= 1
                    continue
                again = session.heartbeat(now)
                if again is None:
                    handle[0] = None
                else:
                    heapq.heappush(heap, (again, next(self._order), handle))
            await trio.lowlevel.checkpoint()
