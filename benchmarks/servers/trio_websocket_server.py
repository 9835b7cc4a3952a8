"""Reference: a bare trio-websocket server speaking the benchmark protocol.

``python trio_websocket_server.py PORT``. trio-websocket's defaults (no heartbeat,
``message_queue_size=1``); JSON with the standard library. A ``blast`` is sent to
every open connection, one ``send_message`` after another (the naive broadcast loop).
"""

from __future__ import annotations

import contextlib
import json
import sys

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

CONNECTIONS: set[WebSocketConnection] = set()


async def handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    CONNECTIONS.add(ws)
    try:
        while True:
            msg = json.loads(await ws.get_message())
            if msg["type"] == "blast":
                event = json.dumps({"type": "blast", "topic": "all", "data": msg.get("data")})
                for peer in list(CONNECTIONS):
                    with contextlib.suppress(ConnectionClosed):
                        await peer.send_message(event)
                if msg.get("id") is None:
                    continue
            reply = {"type": msg["type"], "id": msg.get("id"), "ok": True, "data": msg.get("data")}
            if reply["id"] is None:
                del reply["id"]
            await ws.send_message(json.dumps(reply))
    except ConnectionClosed:
        pass
    finally:
        CONNECTIONS.discard(ws)


if __name__ == "__main__":
    trio.run(serve_websocket, handler, "127.0.0.1", int(sys.argv[1]), None)
