"""An independent WebSocket client for real-socket tests: the `websockets` library.

Its synchronous client runs in worker threads, so trio tests can drive it without
sharing any code with wsroute's server side. Every blocking call has a timeout.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect

TIMEOUT = 5.0


class WSClient:
    """Speaks JSON in text frames, or msgpack in binary frames when the server chose
    ``wsroute.v1.msgpack``, with the ``msgpack`` package's defaults."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.msgpack = conn.subprotocol == "wsroute.v1.msgpack"

    async def send(self, message: Any) -> None:
        """Send a dict/list in the connection's format, or a str/bytes frame as is."""
        if not isinstance(message, str | bytes):
            message = msgpack.packb(message) if self.msgpack else json.dumps(message)
        await trio.to_thread.run_sync(self.conn.send, message)

    async def recv_raw(self, timeout: float = TIMEOUT) -> str | bytes:
        return await trio.to_thread.run_sync(self.conn.recv, timeout)

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        """The next frame, decoded from the connection's format (a frame of the
        other kind fails the test)."""
        frame = await self.recv_raw(timeout)
        if self.msgpack:
            assert isinstance(frame, bytes), f"a text frame under msgpack: {frame!r}"
            return msgpack.unpackb(frame)
        assert isinstance(frame, str), f"a binary frame under JSON: {frame!r}"
        return json.loads(frame)

    async def request(self, type: str, data: Any = None, id: int | str = 1) -> Any:
        """Send a request and return the reply with that id, skipping events."""
        message: dict[str, Any] = {"type": type, "id": id}
        if data is not None:
            message["data"] = data
        await self.send(message)
        while True:
            frame = await self.recv()
            if frame.get("id") == id and "ok" in frame:
                return frame

    async def wait_closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Read until the server closes; return its (close code, reason)."""

        def drain() -> None:
            try:
                while True:
                    self.conn.recv(timeout)
            except ConnectionClosed:
                pass

        await trio.to_thread.run_sync(drain)
        return self.close_code, self.close_reason

    @property
    def close_code(self) -> int | None:
        """The code of the close frame the server sent (1006 if none arrived)."""
        rcvd = self.conn.protocol.close_rcvd
        return rcvd.code if rcvd is not None else self.conn.close_code

    @property
    def close_reason(self) -> str | None:
        rcvd = self.conn.protocol.close_rcvd
        return rcvd.reason if rcvd is not None else self.conn.close_reason

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await trio.to_thread.run_sync(self.conn.close, code, reason)


@asynccontextmanager
async def connect(port: int, path: str = "/", **kwargs: Any) -> AsyncIterator[WSClient]:
    """Connect to ``ws://127.0.0.1:{port}{path}``, or ``wss://`` when ``ssl`` (a
    client ``SSLContext``) is given."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    kwargs.setdefault("compression", None)
    kwargs.setdefault("proxy", None)
    scheme = "wss" if kwargs.get("ssl") is not None else "ws"
    conn = await trio.to_thread.run_sync(
        lambda: sync_connect(f"{scheme}://127.0.0.1:{port}{path}", **kwargs).__enter__()
    )
    try:
        yield WSClient(conn)
    finally:
        await trio.to_thread.run_sync(conn.close)
