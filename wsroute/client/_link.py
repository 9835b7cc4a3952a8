"""One open connection: its socket, its format, its queue of frames to send, and the
tasks that keep it going besides the reader (``_reader``).

The writer sends queued frames whole and in order, so that a request cancelled by its
timeout never cuts a frame in half; the pinger, if asked, ends a connection whose
pongs stop coming.
"""

from __future__ import annotations

import logging
from typing import Final

import trio
import trio_websocket

from .._errors import Disconnected
from .._msgpack import SUBPROTOCOL as MSGPACK

logger = logging.getLogger("wsroute.client")

#: Frames waiting for the writer; a full queue makes senders wait (back-pressure).
_OUTGOING = 1024
#: The close code of a connection that ended without a close frame.
ABNORMAL: Final = 1006


class Link:
    """One open connection: its socket, its format and its queue of frames to send."""

    __slots__ = ("binary", "closed", "outgoing", "scope", "take", "ws")

    def __init__(self, ws: trio_websocket.WebSocketConnection, scope: trio.CancelScope) -> None:
        self.ws = ws
        self.scope = scope  # the connection's nursery: cancelled when it ends
        #: msgpack in binary frames, as the server selected; else JSON in text frames.
        self.binary = ws.subprotocol == MSGPACK
        self.outgoing, self.take = trio.open_memory_channel[str | bytes](_OUTGOING)
        self.closed: tuple[int, str] | None = None  # why it ended, once it has

    def end(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
        self.scope.cancel()

    async def send(self, frame: str | bytes) -> None:
        """Queue ``frame`` for the writer; waits while the queue is full.

        Raises:
            Disconnected: the connection has ended.
        """
        try:
            await self.outgoing.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            code, reason = self.closed or (ABNORMAL, "")
            raise Disconnected("the connection dropped", code, reason) from None


async def write(link: Link) -> None:
    """Send the queued frames, in order, until the connection ends."""
    ws = link.ws
    try:
        async for frame in link.take:
            await ws.send_message(frame)
    except trio_websocket.ConnectionClosed:
        pass  # the reader reports why


async def ping(link: Link, interval: float, timeout: float, url: str) -> None:
    """Ping every ``interval`` seconds; end the connection when a pong takes longer
    than ``timeout``."""
    while True:
        await trio.sleep(interval)
        with trio.move_on_after(timeout) as scope:
            try:
                await link.ws.ping()
            except trio_websocket.ConnectionClosed:
                return
        if scope.cancelled_caught:
            logger.info("%s: no pong within %g s", url, timeout)
            link.end(ABNORMAL, "ping timeout")
            return
