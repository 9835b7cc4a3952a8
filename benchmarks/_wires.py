"""How a benchmark client speaks to a wsroute app and to a python-socketio server.

Both servers of ``cluster_fanout.py`` take the same two requests: ``join`` (a list of
topics, acknowledged with their count) and ``say`` (``{"topic", "i", "t"}``, published
to ``topic``; ``t`` is the send time from ``time.perf_counter_ns``). A wire turns them
into frames and reads the frames that come back: an event's send time, an error, or
a frame the client must answer (Engine.IO's ping).
"""

from __future__ import annotations

from typing import Any

import orjson


class WsrouteWire:
    """wsroute's JSON envelope: ``{"type", "id", "data"}`` requests, events with
    ``topic`` and no ``ok``."""

    resource = "/"

    async def open(self, ws: Any) -> None:
        """Nothing to do: a wsroute connection is ready once the handshake is done."""

    def join(self, topics: list[str]) -> str:
        return orjson.dumps({"type": "join", "id": 1, "data": topics}).decode()

    def joined(self, frame: str | bytes) -> bool:
        message = orjson.loads(frame)
        if message.get("ok") is False:
            raise RuntimeError(f"join refused: {message}")
        return message.get("type") == "join" and message.get("id") == 1

    def say(self, topic: str, i: int, t: int) -> str:
        return orjson.dumps({"type": "say", "data": {"topic": topic, "i": i, "t": t}}).decode()

    def sent_at(self, frame: str | bytes) -> int | None:
        message = orjson.loads(frame)
        if message.get("type") == "say" and "ok" not in message:
            return int(message["data"]["t"])
        return None

    def answer(self, frame: str | bytes) -> str | None:
        return None  # the server pings with control frames; trio-websocket answers them

    def is_error(self, frame: str | bytes) -> bool:
        return orjson.loads(frame).get("ok") is False


class SocketioWire:
    """Socket.IO 5 over Engine.IO 4, WebSocket transport only, default namespace.

    ``0{...}`` opens the Engine.IO session and ``40`` the namespace; ``42[event,
    data]`` is an event, ``421[...]`` one that asks for acknowledgement ``431[...]``;
    the server pings with ``2`` and closes the session unless the client says ``3``.
    """

    resource = "/socket.io/?EIO=4&transport=websocket"

    async def open(self, ws: Any) -> None:
        frame = await ws.get_message()
        if not frame.startswith("0"):
            raise RuntimeError(f"no Engine.IO open packet: {frame[:200]!r}")
        await ws.send_message("40")
        while not (frame := await ws.get_message()).startswith("40"):
            if frame.startswith("44"):
                raise RuntimeError(f"namespace refused: {frame[:200]!r}")

    def join(self, topics: list[str]) -> str:
        return "421" + orjson.dumps(["join", topics]).decode()

    def joined(self, frame: str | bytes) -> bool:
        return isinstance(frame, str) and frame.startswith("431[")

    def say(self, topic: str, i: int, t: int) -> str:
        return "42" + orjson.dumps(["say", {"topic": topic, "i": i, "t": t}]).decode()

    def sent_at(self, frame: str | bytes) -> int | None:
        if isinstance(frame, str) and frame.startswith('42["say",'):
            return int(orjson.loads(frame[2:])[1]["t"])
        return None

    def answer(self, frame: str | bytes) -> str | None:
        return "3" if frame == "2" else None

    def is_error(self, frame: str | bytes) -> bool:
        return isinstance(frame, str) and frame.startswith(("1", "41", "44"))


Wire = WsrouteWire | SocketioWire
