"""A connection's lifetime (``wsroute._server.session``): hooks and their time limits, on the
in-memory client under trio's autojump clock (the timeouts take no real time); then, over
real sockets, the workers that run its requests and every way it ends."""

from __future__ import annotations

import gc
import logging
import socket
from typing import Any

import pytest
import trio
import trio.testing

from wsroute import App, Connection, Disconnect
from wsroute.testing import CloseInfo, open_client

from .servers import Recorder, assert_nothing_pending, items_app
from .wsclient import connect


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


# -- workers: how a connection's requests run (real sockets) -----------------------


async def test_a_connection_that_asked_once_keeps_no_worker(serve):
    # Most connections ask once (a join), then listen: their worker ends with the
    # request. From the second request on, one worker waits for the next.
    app = items_app()
    port = await serve(app)
    async with connect(port) as client:
        [conn] = app.connections
        nursery = conn._nursery
        assert (await client.request("ping"))["data"] == "pong"
        await trio.testing.wait_all_tasks_blocked()  # the worker's end, after the reply
        assert nursery.child_tasks == set()
        assert (await client.request("ping", id=2))["data"] == "pong"
        assert (await client.request("ping", id=3))["data"] == "pong"
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 1  # the waiting worker
        assert (await client.request("ping", id=4))["data"] == "pong"


async def test_replies_in_request_order_by_default(serve):
    app = App()

    @app.direct("work")
    async def work(delay: float) -> float:
        await trio.sleep(delay)
        return delay

    port = await serve(app)
    async with connect(port) as client:
        for i, delay in enumerate([0.05, 0.0, 0.02]):
            await client.send({"type": "work", "id": i, "data": delay})
        assert [(await client.recv())["id"] for _ in range(3)] == [0, 1, 2]


async def test_max_concurrency_runs_handlers_together(serve):
    app = App(max_concurrency=2)
    first_running = trio.Event()

    @app.direct("first")
    async def first() -> str:
        first_running.set()
        await second_done.wait()
        return "first"

    second_done = trio.Event()

    @app.direct("second")
    async def second() -> str:
        await first_running.wait()
        second_done.set()
        return "second"

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "first", "id": 1})
        await client.send({"type": "second", "id": 2})
        assert [(await client.recv())["data"] for _ in range(2)] == ["second", "first"]


async def test_full_request_queue_answers_overloaded(serve):
    app = App(max_queued_requests=1)
    started = trio.Event()
    release = trio.Event()

    @app.direct("block")
    async def block(n: int) -> int:
        started.set()
        await release.wait()
        return n

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "block", "id": 1, "data": 1})
        with trio.fail_after(5):
            await started.wait()
        await client.send({"type": "block", "id": 2, "data": 2})  # queued
        await client.send({"type": "block", "id": 3, "data": 3})  # no room
        overloaded = await client.recv()
        assert overloaded["id"] == 3 and overloaded["error"]["code"] == "overloaded"
        release.set()
        assert [(await client.recv())["data"] for _ in range(2)] == [1, 2]


# -- endings: on_disconnect exactly once (real sockets) ------------------------------


async def test_client_close(serve):
    app = items_app()
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client:
        await client.close(4000, "bye")
    assert await rec.wait_ended() == [Disconnect(4000, "bye", "client")]
    assert len(rec.connected) == 1


async def test_client_close_cancels_running_handlers_and_is_answered(serve):
    app = items_app()
    rec = Recorder(app)
    started, cancelled = trio.Event(), trio.Event()

    @app.direct("hang")
    async def hang() -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "hang", "id": 1})
        with trio.fail_after(5):
            await started.wait()
        await client.close(4000, "bye")
        assert client.close_code == 4000  # the server answered our close frame
    with trio.fail_after(5):
        await cancelled.wait()
    assert await rec.wait_ended() == [Disconnect(4000, "bye", "client")]


async def test_client_vanishes_without_close(serve):
    app = items_app()
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client:
        await assert_nothing_pending(client)
        client.conn.socket.shutdown(socket.SHUT_RDWR)
        assert await rec.wait_ended() == [Disconnect(1006, "", "client")]


@pytest.mark.parametrize("on_disconnect", [False, True], ids=["plain", "on_disconnect"])
async def test_an_ended_connection_is_freed_without_the_garbage_collector(serve, on_disconnect):
    """A connection's objects hold each other's callbacks while it runs; once it has
    ended, reference counting alone must free them (the cyclic collector stays off
    here), however it ended: the client closed, the server closed, the client
    vanished. A cycle left anywhere keeps them all."""
    from wsroute._server.intake import Intake
    from wsroute._server.session import Session
    from wsroute._server.transport import Transport as WebSocket

    app = items_app()
    ended = 0

    @app.direct("kick")
    async def kick(conn: Connection) -> str:
        await conn.close(4001, "kicked")
        return "done"

    if on_disconnect:

        @app.on_disconnect
        async def count(conn: Connection, disconnect: Disconnect) -> None:
            nonlocal ended
            ended += 1

    def alive() -> list[object]:
        kinds = (Session, Intake, WebSocket, Connection)
        return [o for o in gc.get_objects() if type(o) in kinds]  # no isinstance: proxies

    port = await serve(app)
    gc.collect()
    gc.disable()
    try:
        async with connect(port) as client:
            assert (await client.request("ping"))["data"] == "pong"
            await client.close(1000, "")
        async with connect(port) as client:
            await client.send({"type": "kick", "id": 1})
            assert await client.wait_closed() == (4001, "kicked")
        async with connect(port) as client:
            await assert_nothing_pending(client)
            client.conn.socket.shutdown(socket.SHUT_RDWR)
        with trio.fail_after(5):
            while app.connections:
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert alive() == []
        assert ended == (3 if on_disconnect else 0)
    finally:
        gc.enable()


async def test_failing_on_connect_closes_with_1011_and_still_disconnects(serve, caplog):
    app = items_app()

    @app.on_connect
    async def boom(conn: Connection) -> None:
        raise RuntimeError("on_connect failed")

    rec = Recorder(app)  # registered after boom: must not run its on_connect
    port = await serve(app)
    async with connect(port) as client:
        assert await client.wait_closed() == (1011, "internal error")
    assert await rec.wait_ended() == [Disconnect(1011, "internal error", "server")]
    assert rec.connected == []
    assert any("on_connect" in r.getMessage() for r in caplog.records)


async def test_binary_frame_closes_with_1003(serve):
    app = items_app()
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client:
        await client.send(b"\x00\x01")
        assert await client.wait_closed() == (1003, "binary frames are not supported")
    assert await rec.wait_ended() == [Disconnect(1003, "binary frames are not supported", "server")]


async def test_oversized_message_closes_with_1009(serve):
    app = items_app(max_message_size=1000)
    rec = Recorder(app)
    port = await serve(app)
    async with connect(port) as client, connect(port) as other:
        await client.send({"type": "ping", "data": "x" * 2000})
        code, _ = await client.wait_closed()
        assert code == 1009
        await assert_nothing_pending(other)
    reasons = await rec.wait_ended(2)
    assert [r.code for r in reasons].count(1009) == 1
