from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator

import pytest
import trio

from wsroute import App

from .needs import in_ci


@pytest.fixture
async def serve(nursery: trio.Nursery) -> AsyncIterator[Callable[[App], Awaitable[int]]]:
    """``port = await serve(app)``: serve ``app`` on 127.0.0.1, a free port, for this test."""

    async def start(app: App) -> int:
        port: int = await nursery.start(app.serve, "127.0.0.1", 0)
        return port

    yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI every system part is installed, so no test may skip (tests/needs.py):
    a skip there, however it came about, is reported as a failure."""
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"CI runs every test, but this one skipped: {report.longrepr}"
    return report
