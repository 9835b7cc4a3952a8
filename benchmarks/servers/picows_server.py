"""Reference: picows (Cython, asyncio) speaking the benchmark protocol.

``python picows_server.py PORT [--uvloop]``. picows' defaults for everything else
(no heartbeat of its own, automatic pong, 16 KiB read buffer per connection, its
``aiofastnet`` transports, which picows uses whenever that package is installed, as
it is as a dependency); the default asyncio event loop, or uvloop with ``--uvloop``.
JSON with the standard library. picows hands over frames, not messages, through a
callback (no task per connection): a fragmented text message is joined here, and a
CLOSE frame is answered with the same code before the TCP connection is closed. A
``blast`` is encoded once and sent to every connection in turn (``send`` only
queues it on the transport).
"""

from __future__ import annotations

import asyncio
import json
import sys

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

CONNECTIONS: set[WSTransport] = set()


def handle(transport: WSTransport, text: str) -> None:
    msg = json.loads(text)
    if msg["type"] == "blast":
        event = json.dumps({"type": "blast", "topic": "all", "data": msg.get("data")}).encode()
        for peer in tuple(CONNECTIONS):  # a failed write may end a connection at once
            peer.send(WSMsgType.TEXT, event)
        if msg.get("id") is None:
            return
    reply = {"type": msg["type"], "id": msg.get("id"), "ok": True, "data": msg.get("data")}
    if reply["id"] is None:
        del reply["id"]
    transport.send(WSMsgType.TEXT, json.dumps(reply))


class Connection(WSListener):
    def __init__(self) -> None:
        self.fragments: list[bytes] | None = None  # a text message still being received

    def on_ws_connected(self, transport: WSTransport) -> None:
        CONNECTIONS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CONNECTIONS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            if frame.fin:
                handle(transport, frame.get_payload_as_utf8_text())
            else:
                self.fragments = [frame.get_payload_as_bytes()]
        elif kind == WSMsgType.CONTINUATION and self.fragments is not None:
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                text = b"".join(self.fragments).decode()
                self.fragments = None
                handle(transport, text)
        elif kind == WSMsgType.CLOSE:
            # Answer the peer's CLOSE (echoing its code, 1000 if it gave none), then
            # close TCP once the answer is written: the server closes TCP first.
            code = frame.get_close_code()
            transport.send_close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code)
            transport.disconnect(graceful=True)


async def main(port: int) -> None:
    server = await ws_create_server(lambda request: Connection(), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1])
    if "--uvloop" in sys.argv[2:]:
        import uvloop

        uvloop.run(main(port))
    else:
        asyncio.run(main(port))
