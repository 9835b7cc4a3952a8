"""Request coalescing: the single-flight primitive, and coalesced direct routes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from wsroute import App, Connection, HandlerError, RegistrationError
from wsroute._server.coalesce import CoalesceStats, CoalesceTimeout, SingleFlight
from wsroute.testing import ErrorReply, Reply, open_client


class Work:
    """A shared call that records its runs and waits to be released."""

    def __init__(self) -> None:
        self.runs = 0
        self.cancelled = 0
        self.release = trio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> str:
        self.runs += 1
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        if self.fail is not None:
            raise self.fail
        return "result"


async def test_identical_concurrent_calls_share_one_run(autojump_clock):
    stats = CoalesceStats()
    work = Work()
    results: list[str] = []
    async with trio.open_nursery() as owner:
        flights = SingleFlight(owner, stats)

        async def wait() -> None:
            results.append(await flights.run("key", work, None))

        async with trio.open_nursery() as waiters:
            for _ in range(100):
                waiters.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            work.release.set()
    assert results == ["result"] * 100
    assert work.runs == 1
    assert (stats.executions, stats.coalesced) == (1, 99)


async def test_cancelled_waiters_leave_the_last_one_its_result(autojump_clock):
    stats = CoalesceStats()
    work = Work()
    scopes = [trio.CancelScope() for _ in range(100)]
    results: list[str] = []
    async with trio.open_nursery() as owner:
        flights = SingleFlight(owner, stats)

        async def wait(scope: trio.CancelScope) -> None:
            with scope:
                results.append(await flights.run("key", work, None))

        async with trio.open_nursery() as waiters:
            for scope in scopes:
                waiters.start_soon(wait, scope)
            await trio.testing.wait_all_tasks_blocked()
            for scope in scopes[:99]:
                scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert work.cancelled == 0  # one waiter is left: the run goes on
            work.release.set()
    assert results == ["result"]
    assert (work.runs, work.cancelled, stats.abandoned) == (1, 0, 0)


async def test_the_run_is_cancelled_when_every_waiter_is_gone(autojump_clock):
    stats = CoalesceStats()
    work = Work()
    async with trio.open_nursery() as owner:
        flights = SingleFlight(owner, stats)
        async with trio.open_nursery() as waiters:
            for _ in range(3):
                waiters.start_soon(flights.run, "key", work, None)
            await trio.testing.wait_all_tasks_blocked()
            waiters.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert (work.runs, work.cancelled, stats.abandoned) == (1, 1, 1)
        # A later call with the same key starts afresh.
        later = Work()
        later.release.set()
        assert await flights.run("key", later, None) == "result"
    assert stats.executions == 2


async def test_errors_reach_every_waiter(autojump_clock):
    stats = CoalesceStats()
    work = Work()
    work.fail = ValueError("boom")
    errors: list[BaseException] = []
    async with trio.open_nursery() as owner:
        flights = SingleFlight(owner, stats)

        async def wait() -> None:
            try:
                await flights.run("key", work, None)
            except ValueError as exc:
                errors.append(exc)

        async with trio.open_nursery() as waiters:
            for _ in range(5):
                waiters.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            work.release.set()
    assert len(errors) == 5 and all(e is errors[0] for e in errors)
    assert (work.runs, stats.failures) == (1, 1)


async def test_different_keys_do_not_coalesce(autojump_clock):
    stats = CoalesceStats()
    works = [Work(), Work()]
    async with trio.open_nursery() as owner:
        flights = SingleFlight(owner, stats)
        async with trio.open_nursery() as waiters:
            waiters.start_soon(flights.run, "a", works[0], None)
            waiters.start_soon(flights.run, "b", works[1], None)
            await trio.testing.wait_all_tasks_blocked()
            for work in works:
                work.release.set()
    assert [w.runs for w in works] == [1, 1]
    assert (stats.executions, stats.coalesced) == (2, 0)


async def test_coalesce_timeout(autojump_clock):
    stats = CoalesceStats()
    work = Work()
    async with trio.open_nursery() as owner:
        flights = SingleFlight(owner, stats)
        with pytest.raises(CoalesceTimeout):
            await flights.run("key", work, 2.0)
    assert trio.current_time() == pytest.approx(2.0)
    assert (work.cancelled, stats.timeouts) == (1, 1)


# -- coalesced routes -------------------------------------------------------------------------


def coalescing_app(work: Work, **route: Any) -> App:
    app = App(max_concurrency=100, max_queued_requests=200)

    @app.direct("report", coalesce=route.pop("coalesce", True), **route)
    async def report(query: dict[str, Any], conn: Connection) -> Any:
        return {"value": await work(), "query": query}

    return app


async def test_100_identical_requests_run_the_handler_once(autojump_clock):
    work = Work()
    app = coalescing_app(work)
    async with open_client(app) as client:
        for i in range(100):
            await client.send("report", {"q": 1, "z": [2]}, id=i)
        await trio.testing.wait_all_tasks_blocked()
        work.release.set()
        replies = [await client.expect_reply(i) for i in range(100)]
    assert all(isinstance(r, Reply) and r.data["value"] == "result" for r in replies)
    assert work.runs == 1
    assert (app.coalesce_stats.executions, app.coalesce_stats.coalesced) == (1, 99)


async def test_key_ignores_object_key_order_but_not_values(autojump_clock):
    work = Work()
    app = coalescing_app(work)
    async with open_client(app) as client:
        await client.send("report", {"a": 1, "b": 2}, id=1)
        await client.send("report", {"b": 2, "a": 1}, id=2)
        await client.send("report", {"a": 1, "b": 3}, id=3)
        await trio.testing.wait_all_tasks_blocked()
        work.release.set()
        for i in (1, 2, 3):
            assert isinstance(await client.expect_reply(i), Reply)
    assert work.runs == 2


async def test_a_closing_connection_does_not_cancel_the_others(autojump_clock):
    work = Work()
    app = coalescing_app(work)
    async with open_client(app) as stays:
        async with open_client(app) as leaves:
            await leaves.send("report", {"q": 1}, id=1)
            await trio.testing.wait_all_tasks_blocked()
            await stays.send("report", {"q": 1}, id=2)
            await trio.testing.wait_all_tasks_blocked()
        await trio.testing.wait_all_tasks_blocked()
        work.release.set()
        reply = await stays.expect_reply(2)
        assert isinstance(reply, Reply) and reply.data["value"] == "result"
    assert (work.runs, work.cancelled) == (1, 0)


async def test_errors_and_timeouts_become_error_replies(autojump_clock):
    work = Work()
    work.fail = HandlerError("unavailable", "report service is down")
    app = coalescing_app(work, coalesce_timeout=30)
    async with open_client(app) as client:
        for i in range(3):
            await client.send("report", {}, id=i)
        await trio.testing.wait_all_tasks_blocked()
        work.release.set()
        codes = [await client.expect_reply(i) for i in range(3)]
        assert {r.code for r in codes if isinstance(r, ErrorReply)} == {"unavailable"}
        slow = Work()
        app_slow = coalescing_app(slow, coalesce_timeout=30)
        async with open_client(app_slow) as other:
            await other.send("report", {}, id=9)
            reply = await other.expect_reply(9, timeout=60)
            assert isinstance(reply, ErrorReply) and reply.code == "timeout"
        assert app_slow.coalesce_stats.timeouts == 1


async def test_custom_key_function(autojump_clock):
    work = Work()
    app = coalescing_app(work, coalesce=lambda query, conn: query.get("user"))
    async with open_client(app) as client:
        await client.send("report", {"user": "a", "page": 1}, id=1)
        await client.send("report", {"user": "a", "page": 2}, id=2)
        await client.send("report", {"user": "b", "page": 1}, id=3)
        await trio.testing.wait_all_tasks_blocked()
        work.release.set()
        for i in (1, 2, 3):
            await client.expect_reply(i)
    assert work.runs == 2


def test_coalesce_registration_errors():
    app = App()

    async def handler() -> None: ...

    with pytest.raises(RegistrationError, match="coalesce must be"):
        app.add_direct("a", handler, coalesce="yes")  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="coalesce_timeout needs"):
        app.add_direct("b", handler, coalesce_timeout=5)
    with pytest.raises(RegistrationError, match="positive number"):
        app.add_direct("c", handler, coalesce=True, coalesce_timeout=0)
