from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from wsroute import App


@pytest.fixture
async def serve(nursery: trio.Nursery) -> AsyncIterator[Callable[[App], Awaitable[int]]]:
    """``port = await serve(app)``: serve ``app`` on 127.0.0.1, a free port, for this test."""

    async def start(app: App) -> int:
        port: int = await nursery.start(app.serve, "127.0.0.1", 0)
        return port

    yield start
