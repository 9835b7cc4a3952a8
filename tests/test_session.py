"""A connection's lifetime (``wsroute._server.session``): hooks and their time limits, on the
in-memory client under trio's autojump clock (the timeouts take no real time)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from wsroute import App, Connection, Disconnect
from wsroute.testing import CloseInfo, open_client


async def test_an_on_connect_hook_that_overruns_closes_the_connection_with_1011(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(hook_timeout=2.0, ping_interval=None)
    later_hook_ran = handled = False
    cancelled = trio.Event()
    ended: list[Disconnect] = []

    @app.on_connect
    async def stuck(conn: Connection) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    @app.on_connect
    async def later(conn: Connection) -> None:
        nonlocal later_hook_ran
        later_hook_ran = True

    @app.on_disconnect
    async def record(conn: Connection, disconnect: Disconnect) -> None:
        ended.append(disconnect)

    @app.direct("ping")
    async def ping() -> str:
        nonlocal handled
        handled = True
        return "pong"

    with caplog.at_level(logging.WARNING, logger="wsroute"):
        async with open_client(app) as client:
            start = trio.current_time()
            await client.send("ping", id=1)  # not read while on_connect runs, then dropped
            assert await client.wait_closed(timeout=60) == CloseInfo(1011, "internal error")
            assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)
    assert cancelled.is_set()
    assert not later_hook_ran and not handled
    assert ended == [Disconnect(1011, "internal error", "server")]
    assert any(
        "on_connect hook" in r.getMessage() and "stuck timed out" in r.getMessage()
        for r in caplog.records
    )


async def test_an_on_connect_hook_within_the_limit_is_not_cut(autojump_clock: Any) -> None:
    app = App(hook_timeout=2.0, ping_interval=None)

    @app.on_connect
    async def slow_but_in_time(conn: Connection) -> None:
        await trio.sleep(1.9)
        await conn.send("welcome")

    async with open_client(app) as client:
        await client.expect_event("welcome", timeout=10)
        await client.expect_no_message(timeout=10)  # well past the limit: still open
        assert client.closed is None


async def test_an_on_disconnect_hook_that_overruns_is_cut_and_the_next_still_runs(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(hook_timeout=2.0, ping_interval=None)
    order: list[str] = []
    done = trio.Event()

    @app.on_disconnect
    async def stuck() -> None:
        try:
            await trio.sleep_forever()
        finally:
            order.append("stuck cancelled")

    @app.on_disconnect
    async def after() -> None:
        order.append("after")
        done.set()

    with caplog.at_level(logging.WARNING, logger="wsroute"):
        async with open_client(app) as client:
            await client.close()
            start = trio.current_time()
        with trio.fail_after(60):
            await done.wait()
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)
    assert order == ["stuck cancelled", "after"]
    assert any("on_disconnect hook" in r.getMessage() for r in caplog.records)
