"""Reference: python-socketio with its Redis manager, for ``cluster_fanout.py``.

``BENCH_REDIS_URL=redis://127.0.0.1:P uvicorn socketio_redis_app:app --port PORT
--log-level warning`` in the ``socketio`` venv (``uvicorn[standard]``: uvloop,
httptools, the ``websockets`` protocol). ``socketio.AsyncRedisManager`` with its
defaults: every process subscribes to one Redis channel (``socketio``), an emit is
delivered to this process's members of the room and PUBLISHed once, and every other
process receives it and delivers it to its own members. JSON with the standard
library.

Events: ``join`` (a list of rooms; the acknowledgement is their count) and ``say``
(``{"topic", "i", "t"}``, emitted to the room ``topic``), as the wsroute app's routes.
"""

from __future__ import annotations

import os
from typing import Any

import socketio

sio = socketio.AsyncServer(
    async_mode="asgi", client_manager=socketio.AsyncRedisManager(os.environ["BENCH_REDIS_URL"])
)


@sio.on("join")
async def join(sid: str, rooms: list[str]) -> int:
    for room in rooms:
        await sio.enter_room(sid, room)
    return len(rooms)


@sio.on("say")
async def say(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("say", data, room=data["topic"])


app = socketio.ASGIApp(sio)
