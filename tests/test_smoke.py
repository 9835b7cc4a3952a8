from __future__ import annotations

from wsroute import App, Connection

from .wsclient import connect


async def test_direct_reply_over_a_real_socket(serve):
    app = App()

    @app.direct("echo")
    async def echo(data, conn: Connection):
        return {"data": data, "conn": conn.id == app.connections[0].id}

    port = await serve(app)
    async with connect(port) as client:
        reply = await client.request("echo", {"x": 1}, id=7)
    assert reply == {"type": "echo", "id": 7, "ok": True, "data": {"data": {"x": 1}, "conn": True}}
