"""Serving over TCP (``wsroute._server.tcp``): draining, refusing, cancelled, a taken
port, and the listening line; over real sockets.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio

from wsroute import App, Disconnect, ListenError
from wsroute._server.tcp import url

from .servers import Recorder, assert_nothing_pending, items_app
from .wsclient import connect


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
