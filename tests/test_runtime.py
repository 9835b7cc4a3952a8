"""One serving of an app (``wsroute._server.runtime``): the TCP server and its drain,
``handle_stream`` for any byte stream, and aborting when cancelled.

The TCP parts run over real sockets (the `websockets` client); ``handle_stream`` and
the drain's deadline over memory streams under the autojump clock.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio
import trio.testing

from wsroute import App, Disconnect, ListenError
from wsroute._server.runtime import Runtime, url
from wsroute.testing import CloseInfo, HandshakeRejected, open_app, open_client
from wsroute.testing._connection import Closed
from wsroute.testing._connection import connect as ws_connect

from .servers import Recorder, assert_nothing_pending, items_app
from .wsclient import connect

# -- serve_tcp: draining, refusing, cancelled, and a taken port ---------------------------


async def test_shutdown_lets_handlers_finish_then_closes_with_1001(serve):
    app = items_app()
    rec = Recorder(app)
    started, release = trio.Event(), trio.Event()

    @app.direct("slow")
    async def slow() -> str:
        started.set()
        await release.wait()
        return "finished"

    port = await serve(app)
    async with connect(port) as busy, connect(port) as idle:
        await busy.send({"type": "slow", "id": 1})
        with trio.fail_after(5):
            await started.wait()
        app.shutdown()
        assert await idle.wait_closed() == (1001, "server shutting down")
        release.set()
        assert await busy.recv() == {"type": "slow", "id": 1, "ok": True, "data": "finished"}
        assert await busy.wait_closed() == (1001, "server shutting down")
    reasons = await rec.wait_ended(2)
    assert reasons == [Disconnect(1001, "server shutting down", "server")] * 2
    with trio.fail_after(5):
        while app.running:
            await trio.sleep(0.01)


async def test_shutdown_refuses_new_connections(serve):
    app = items_app()
    port = await serve(app)
    app.shutdown()
    with trio.fail_after(5):
        while app.running:
            await trio.sleep(0.01)
    with pytest.raises(OSError):
        async with connect(port):
            pass


async def test_cancelled_server_still_closes_and_disconnects(nursery):
    app = items_app()
    rec = Recorder(app)
    scope = trio.CancelScope()

    async def serve_until_cancelled(*, task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await app.serve("127.0.0.1", 0, task_status=task_status)

    port = await nursery.start(serve_until_cancelled)
    async with connect(port) as client:
        await assert_nothing_pending(client)
        scope.cancel()
        assert await client.wait_closed() == (1001, "server shutting down")
    assert await rec.wait_ended() == [Disconnect(1001, "server shutting down", "server")]


async def test_serving_on_a_taken_port_raises_listen_error(nursery: trio.Nursery) -> None:
    with trio.socket.socket() as holder:
        await holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ListenError) as info:
            await nursery.start(App().serve, "127.0.0.1", port)
    error = info.value
    assert (error.host, error.port) == ("127.0.0.1", port)
    assert isinstance(error, OSError) and error.errno == errno.EADDRINUSE
    assert isinstance(error.error, OSError)
    assert str(error).startswith(f"cannot listen on 127.0.0.1:{port}: [Errno ")


async def test_the_listening_line_names_the_url_and_the_broker(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="wsroute"):
        port = await serve(App())
    assert f"listening on ws://127.0.0.1:{port} (broker memory://)" in caplog.messages
    assert url("::1", 80) == "ws://[::1]:80"  # an IPv6 address is bracketed in the URL
    assert url("127.0.0.1", 443, tls=True) == "wss://127.0.0.1:443"


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
