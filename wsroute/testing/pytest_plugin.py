"""pytest fixtures for wsroute apps, registered through the ``pytest11`` entry point.

Adopt in one line: define an ``app`` fixture returning your App, then ask for
``ws_client`` and open as many clients as the test needs::

    @pytest.fixture
    def app():
        return make_app()

    async def test_hello(ws_client):
        alice = await ws_client()
        assert await alice.request("ping") == "pong"

The fixtures are async, so they need pytest-trio (``trio_mode = true``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TypeVar

import outcome
import pytest
import trio

from .._app import App
from ._client import TestClient
from ._open import check_app, open_app, open_client

T = TypeVar("T")


class _ContextOwner:
    """Enters async context managers in one background task and exits them in reverse.

    A fixture's setup and teardown run in the fixture's task, but the test calls the
    factory from its own task; nurseries must be opened and closed by the same task,
    so this task does both on the test's behalf.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[
            tuple[AbstractAsyncContextManager[Any], trio.MemorySendChannel[outcome.Outcome[Any]]]
        ](0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with AsyncExitStack() as stack, self._receive:
            task_status.started()
            async for manager, reply in self._receive:
                result = await outcome.acapture(stack.enter_async_context, manager)
                await reply.send(result)

    async def enter(self, manager: AbstractAsyncContextManager[T]) -> T:
        send, receive = trio.open_memory_channel[outcome.Outcome[Any]](1)
        await self._send.send((manager, send))
        result: T = (await receive.receive()).unwrap()
        return result

    def close(self) -> None:
        self._send.close()


ClientFactory = Callable[..., Awaitable[TestClient]]


def _app_fixture(request: pytest.FixtureRequest) -> Any:
    """The test's ``app`` fixture, or an error that says how to give one."""
    try:
        return request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        raise TypeError(
            "ws_client() opens a client on the test's `app` fixture, and there is none:"
            " define one returning your App (@pytest.fixture, def app(): return"
            " make_app()), or pass the app: await ws_client(my_app)"
        ) from None


@pytest.fixture
async def ws_client(request: pytest.FixtureRequest) -> AsyncIterator[ClientFactory]:
    """``await ws_client(app=None, **options)`` opens an in-memory client.

    Without ``app`` it uses the test's ``app`` fixture. Each app runs once for all the
    clients opened on it (lifespan included); everything closes after the test, clients
    first. ``options`` are those of :func:`wsroute.testing.open_client`.
    """
    owner = _ContextOwner()
    running: set[int] = set()
    async with trio.open_nursery() as nursery:
        await nursery.start(owner.run)

        async def open_(app: App | None = None, **options: Any) -> TestClient:
            if app is not None:
                target = check_app(app, "ws_client got")
            else:
                target = check_app(_app_fixture(request), "the app fixture returned")
            if id(target) not in running and not target.running:
                await owner.enter(open_app(target))
                running.add(id(target))
            return await owner.enter(open_client(target, **options))

        yield open_
        owner.close()
