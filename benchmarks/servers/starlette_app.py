"""Reference: Starlette on uvicorn speaking the benchmark protocol.

``uvicorn starlette_app:app --port PORT --log-level warning`` with ``uvicorn[standard]``
(uvloop, httptools, the ``websockets`` protocol implementation), all uvicorn defaults
otherwise (heartbeat every 20 s). JSON with the standard library. A ``blast`` is sent
to every connection, one ``send_text`` after another (the naive broadcast loop).
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

CONNECTIONS: set[WebSocket] = set()


async def endpoint(ws: WebSocket) -> None:
    await ws.accept()
    CONNECTIONS.add(ws)
    try:
        while True:
            msg = json.loads(await ws.receive_text())
            if msg["type"] == "blast":
                event = json.dumps({"type": "blast", "topic": "all", "data": msg.get("data")})
                for peer in list(CONNECTIONS):
                    try:
                        await peer.send_text(event)
                    except Exception:  # the peer went away mid-loop
                        CONNECTIONS.discard(peer)
                if msg.get("id") is None:
                    continue
            reply = {"type": msg["type"], "id": msg.get("id"), "ok": True, "data": msg.get("data")}
            if reply["id"] is None:
                del reply["id"]
            await ws.send_text(json.dumps(reply))
    except WebSocketDisconnect:
        pass
    finally:
        CONNECTIONS.discard(ws)


app = Starlette(routes=[WebSocketRoute("/", endpoint)])
