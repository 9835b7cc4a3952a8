"""The runtime's single heartbeat timer (``wsroute._server.heartbeat``), with fake sessions."""

from __future__ import annotations

import gc
import weakref

import trio
import trio.testing

from wsroute._server.heartbeat import Heartbeat


class Session:
    """Records when it was called; comes back after ``every`` until ``times`` calls."""

    def __init__(self, every: float, times: int = 1000) -> None:
        self.every = every
        self.times = times
        self.calls: list[float] = []

    def heartbeat(self, now: float) -> float | None:
        self.calls.append(now)
        return now + self.every if len(self.calls) < self.times else None


async def test_each_session_is_called_when_it_asks(autojump_clock: trio.abc.Clock) -> None:
    beat = Heartbeat(interval=10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat.run)
        await trio.testing.wait_all_tasks_blocked()
        fast, slow = Session(every=3), Session(every=7)
        beat.watch(fast)
        await trio.sleep(1)
        beat.watch(slow)  # first call 10 s after being watched
        await trio.sleep(29.5)  # until 30.5: no tie with a due time
        nursery.cancel_scope.cancel()
    assert fast.calls == [10, 13, 16, 19, 22, 25, 28]
    assert slow.calls == [11, 18, 25]


async def test_watching_wakes_a_timer_sleeping_past_the_new_due_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    beat = Heartbeat(interval=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat.run)
        lazy = Session(every=1000)
        beat.watch(lazy)  # due at 5
        await trio.sleep(5.5)  # called once, next due at 1005: the timer sleeps till then
        eager = Session(every=1000)
        beat.watch(eager)  # due at 10.5, long before 1005
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert eager.calls == [10.5]


async def test_a_session_that_returns_none_is_dropped(autojump_clock: trio.abc.Clock) -> None:
    beat = Heartbeat(interval=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat.run)
        done = Session(every=1, times=2)
        beat.watch(done)
        await trio.sleep(10)
        assert done.calls == [1, 2]
        assert len(beat) == 0
        nursery.cancel_scope.cancel()


async def test_forgotten_sessions_are_released_at_once(autojump_clock: trio.abc.Clock) -> None:
    beat = Heartbeat(interval=20)
    sessions = [Session(every=20) for _ in range(1000)]
    handles = [beat.watch(session) for session in sessions]
    refs = [weakref.ref(session) for session in sessions]
    for handle in handles:
        beat.forget(handle)
        beat.forget(handle)  # idempotent
    del sessions
    gc.collect()
    assert all(ref() is None for ref in refs)  # the heap holds no session alive
    assert len(beat) < 1000  # and ended entries were compacted away
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat.run)
        await trio.sleep(25)
        assert len(beat) == 0
        nursery.cancel_scope.cancel()
