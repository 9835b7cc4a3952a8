"""One serving of an app (``wsroute._server.runtime``): its drain, ``handle_stream``
for any byte stream, and aborting when cancelled, over memory streams under the
autojump clock (the TCP server around it: test_tcp.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from wsroute import App, Disconnect
from wsroute._server.runtime import Runtime
from wsroute.testing import CloseInfo, HandshakeRejected, open_app, open_client
from wsroute.testing._connection import Closed
from wsroute.testing._connection import connect as ws_connect

from .servers import Recorder, items_app

# -- drain ---------------------------------------------------------------------------------


def running(app: App) -> Runtime:
    runtime = app._runtime
    assert runtime is not None
    return runtime


@pytest.mark.parametrize("hooks", [0, 1, 3])
async def test_the_drain_deadline_leaves_time_to_close_and_for_every_hook(
    autojump_clock: Any, hooks: int
) -> None:
    app = App(shutdown_timeout=3.0, close_timeout=2.0, hook_timeout=1.5)
    for _ in range(hooks):

        @app.on_disconnect
        async def hook() -> None: ...

    async with open_app(app):
        now = trio.current_time()
        assert running(app).drain() == now + 3.0 + 2.0 + 1.5 * max(1, hooks)


async def test_the_drain_closes_connections_with_1001_and_refuses_new_ones(
    autojump_clock: Any,
) -> None:
    app = items_app(ping_interval=None)
    rec = Recorder(app)
    async with open_app(app), open_client(app) as client:
        assert await client.request("ping") == "pong"
        running(app).drain()
        assert await client.wait_closed() == CloseInfo(1001, "server shutting down")
        assert await rec.wait_ended() == [Disconnect(1001, "server shutting down", "server")]
        with pytest.raises(HandshakeRejected) as refused:
            async with open_client(app):
                pass  # pragma: no cover
        assert (refused.value.status, refused.value.body) == (503, b"server shutting down")
        assert app.connections == []


# -- handle_stream ---------------------------------------------------------------------------


async def test_cancelling_handle_stream_closes_with_1001_and_runs_on_disconnect(
    autojump_clock: Any,
) -> None:
    app = items_app(ping_interval=None, close_timeout=2.0, hook_timeout=1.0)
    rec = Recorder(app)
    started = trio.Event()

    @app.direct("hang")
    async def hang() -> None:
        started.set()
        await trio.sleep_forever()

    async with open_app(app), trio.open_nursery() as nursery:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        serving, returned = trio.CancelScope(), trio.Event()

        async def serve() -> None:
            with serving:
                await running(app).handle_stream(server_stream)
            returned.set()

        nursery.start_soon(serve)
        ws = await ws_connect(nursery, client_stream, "testserver", "/")
        await ws.send_message('{"type": "hang", "id": 1}')
        await started.wait()
        assert len(app.connections) == 1
        serving.cancel()  # the caller of handle_stream goes away
        with trio.move_on_after(2.0 + 1.0):  # close_timeout + hook_timeout
            await returned.wait()
        if not returned.is_set():
            await trio.aclose_forcefully(client_stream)  # so that the test ends
            raise AssertionError("handle_stream did not return once cancelled")
        with pytest.raises(Closed):
            await ws.get_message()
        assert ws.closed == CloseInfo(1001, "server shutting down")
        assert rec.ended[0][1] == Disconnect(1001, "server shutting down", "server")
    assert app.connections == []
