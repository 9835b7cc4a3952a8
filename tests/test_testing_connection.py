"""The in-memory client's own WebSocket (``wsroute.testing._connection``): wsroute's
sans-IO protocol in the client role, against a real app's ``handle_stream`` over
memory streams, under the autojump clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from wsroute import App, Connection, Reject, Request
from wsroute.testing import CloseInfo, open_app
from wsroute.testing._connection import ClientConnection, Closed, Rejected, connect


def make_app(**options: Any) -> App:
    app = App(**options)

    @app.accept
    async def accept(request: Request) -> str:
        if request.query.get("token") != "ok":
            raise Reject(401, "no token", {"WWW-Authenticate": "Bearer"})
        return "user"

    @app.direct("burst")
    async def burst(count: int, conn: Connection) -> int:
        for n in range(count):
            await conn.send("n", n)
        return count

    @app.direct("kick")
    async def kick(conn: Connection) -> None:
        await conn.close(4001, "kicked")

    return app


@asynccontextmanager
async def served(app: App) -> AsyncIterator[tuple[trio.Nursery, trio.abc.Stream]]:
    """The client's end of a memory stream whose other end ``app`` serves."""
    async with open_app(app), trio.open_nursery() as nursery:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        assert app._runtime is not None
        nursery.start_soon(app._runtime.handle_stream, server_stream)
        yield nursery, client_stream


async def opened(
    nursery: trio.Nursery, stream: trio.abc.Stream, **options: Any
) -> ClientConnection:
    return await connect(nursery, stream, "testserver", "/?token=ok", **options)


async def test_a_refused_upgrade_raises_rejected_with_the_answer(autojump_clock: Any) -> None:
    async with served(make_app()) as (nursery, stream):
        with pytest.raises(Rejected) as refused:
            await connect(nursery, stream, "testserver", "/?token=wrong")
    assert (refused.value.status, refused.value.body) == (401, b"no token")
    assert (b"www-authenticate", b"Bearer") in refused.value.headers  # names lowercased


async def test_a_server_gone_before_answering_is_closed_with_1006(autojump_clock: Any) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def read_the_request_and_hang_up() -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await server_stream.receive_some()
        await server_stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_the_request_and_hang_up)
        with pytest.raises(Closed) as closed:
            await connect(nursery, client_stream, "testserver", "/")
    assert closed.value.close == CloseInfo(1006, "closed before answering the upgrade")


async def test_a_server_gone_before_the_request_is_closed_with_1006(autojump_clock: Any) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    await server_stream.aclose()
    async with trio.open_nursery() as nursery:
        with pytest.raises(Closed):
            await connect(nursery, client_stream, "testserver", "/")


async def test_messages_arrive_in_order_then_the_close_handshake_completes(
    autojump_clock: Any,
) -> None:
    async with served(make_app(ping_interval=None)) as (nursery, stream):
        ws = await opened(nursery, stream)
        assert ws.subprotocol is None
        await ws.send_message('{"type": "burst", "id": 1, "data": 50}')
        expected = [f'{{"type":"n","data":{n}}}' for n in range(50)]
        assert [await ws.get_message() for _ in range(50)] == expected
        assert await ws.get_message() == '{"type":"burst","id":1,"ok":true,"data":50}'
        assert ws.closed is None
        await ws.aclose(4000, "done")
        assert ws.closed == CloseInfo(4000, "done")  # the server echoed our close
        with pytest.raises(Closed):
            await ws.send_message("{}")
        with pytest.raises(Closed):
            await ws.get_message()


async def test_a_server_close_is_recorded_after_the_messages_before_it(
    autojump_clock: Any,
) -> None:
    async with served(make_app(ping_interval=None)) as (nursery, stream):
        ws = await opened(nursery, stream)
        await ws.send_message('{"type": "kick", "id": 1}')
        assert await ws.get_message() == '{"type":"kick","id":1,"ok":true,"data":null}'
        with pytest.raises(Closed) as closed:
            await ws.get_message()
        assert closed.value.close == ws.closed == CloseInfo(4001, "kicked")
        await ws.aclose()  # closed already: returns at once


async def test_the_subprotocol_the_server_chose(autojump_clock: Any) -> None:
    app = make_app(subprotocols=["chat.v2", "chat.v1"])
    async with served(app) as (nursery, stream):
        ws = await opened(nursery, stream, subprotocols=["chat.v1", "chat.v2"])
        assert ws.subprotocol == "chat.v2"
        await ws.aclose()


async def test_pings_are_answered_while_open(autojump_clock: Any) -> None:
    async with served(make_app(ping_interval=1.0, ping_timeout=1.0)) as (nursery, stream):
        ws = await opened(nursery, stream)
        await trio.sleep(30)  # thirty pings: one unanswered would close with 1011
        assert ws.closed is None
        await ws.send_message('{"type": "burst", "id": 1, "data": 0}')
        assert await ws.get_message() == '{"type":"burst","id":1,"ok":true,"data":0}'
        await ws.aclose()
        assert ws.closed == CloseInfo(1000, "")
