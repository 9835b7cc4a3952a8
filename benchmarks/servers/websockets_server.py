"""Reference: the ``websockets`` library (asyncio) speaking the benchmark protocol.

``python websockets_server.py PORT``. The library's defaults (heartbeat every 20 s,
``max_queue=16``, the default asyncio event loop); JSON with the standard library. A
``blast`` goes to every connection through ``websockets.asyncio.server.broadcast``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

CONNECTIONS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    CONNECTIONS.add(ws)
    try:
        async for text in ws:
            msg = json.loads(text)
            if msg["type"] == "blast":
                event = json.dumps({"type": "blast", "topic": "all", "data": msg.get("data")})
                broadcast(CONNECTIONS, event)
                if msg.get("id") is None:
                    continue
            reply = {"type": msg["type"], "id": msg.get("id"), "ok": True, "data": msg.get("data")}
            if reply["id"] is None:
                del reply["id"]
            await ws.send(json.dumps(reply))
    except ConnectionClosed:
        pass
    finally:
        CONNECTIONS.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
