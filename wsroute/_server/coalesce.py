"""Request coalescing (single flight): identical concurrent requests share one run.

The shared run belongs to the app, not to any one requester, so a requester that
goes away (its connection closed) is simply no longer waiting; the run is cancelled
only when nobody waits for it any more. Everyone waiting gets the same result or the
same exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import attrs
import outcome
import trio


class CoalesceTimeout(Exception):
    """The shared run did not finish within its ``coalesce_timeout``."""


@attrs.define
class CoalesceStats:
    """Counters of one app's coalescing, readable as ``app.coalesce_stats``."""

    #: Runs of a handler started (each served one or more requests).
    executions: int = 0
    #: Requests that joined a run already in progress instead of starting one.
    coalesced: int = 0
    #: Runs that raised.
    failures: int = 0
    #: Runs that exceeded their coalesce_timeout.
    timeouts: int = 0
    #: Runs cancelled because every requester went away.
    abandoned: int = 0


class _Flight:
    __slots__ = ("done", "result", "scope", "waiters")

    def __init__(self) -> None:
        self.waiters = 0
        self.done = trio.Event()
        self.scope = trio.CancelScope()
        self.result: outcome.Outcome[Any] | None = None


class SingleFlight:
    """Runs at most one call per key at a time, in ``nursery``, shared by its waiters."""

    def __init__(self, nursery: trio.Nursery, stats: CoalesceStats) -> None:
        self._nursery = nursery
        self._flights: dict[Hashable, _Flight] = {}
        self.stats = stats

    async def run(
        self, key: Hashable, call: Callable[[], Awaitable[Any]], timeout: float | None
    ) -> Any:
        """Return ``await call()``, or the result of the identical run in progress.

        Raises:
            CoalesceTimeout: the shared run exceeded ``timeout``.
            Exception: whatever the shared run raised.
        """
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
            self.stats.executions += 1
            self._nursery.start_soon(self._execute, key, flight, call, timeout)
        else:
            self.stats.coalesced += 1
        flight.waiters += 1
        try:
            await flight.done.wait()
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.done.is_set():
                # The last one waiting went away: nobody needs the result.
                self.stats.abandoned += 1
                flight.scope.cancel()
                self._forget(key, flight)
        result = flight.result
        if isinstance(result, outcome.Value):
            return result.value
        assert isinstance(result, outcome.Error)
        raise result.error  # the same exception for every waiter

    async def _execute(
        self,
        key: Hashable,
        flight: _Flight,
        call: Callable[[], Awaitable[Any]],
        timeout: float | None,
    ) -> None:
        with flight.scope:
            if timeout is not None:
                flight.scope.deadline = trio.current_time() + timeout
            try:
                flight.result = outcome.Value(await call())
            except Exception as exc:  # Cancelled must reach the scope, so not BaseException
                self.stats.failures += 1
                flight.result = outcome.Error(exc)
        if flight.result is None:  # cancelled: by its deadline, or abandoned by all
            if flight.waiters > 0:
                self.stats.timeouts += 1
            flight.result = outcome.Error(
                CoalesceTimeout(f"the shared request did not finish within {timeout} s")
            )
        self._forget(key, flight)
        flight.done.set()

    def _forget(self, key: Hashable, flight: _Flight) -> None:
        # A newer flight may already hold the key; leave it alone.
        if self._flights.get(key) is flight:
            del self._flights[key]
