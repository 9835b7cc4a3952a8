"""The reader of a connection: replies to their requests, events to their streams.

It never waits on anyone: a reply settles its request, an event is pushed to each
matching stream (and moves its topic's position, for recovery), and the next frame
is read. What cannot be read is logged and dropped, so bad input never ends the
connection; the connection's end is recorded on its link, with the close code and
reason.
"""

from __future__ import annotations

import logging

import trio_websocket

from . import _codec
from ._events import Event, EventStreams
from ._link import ABNORMAL, Link
from ._positions import Positions
from ._requests import Requests

logger = logging.getLogger("wsroute.client")


class Reader:
    """Hands what the server sends to the client's requests and event streams."""

    __slots__ = ("_events", "_positions", "_requests", "_url")

    def __init__(
        self, url: str, requests: Requests, events: EventStreams, positions: Positions | None
    ) -> None:
        self._url = url  # for the log
        self._requests = requests
        self._events = events
        self._positions = positions

    async def read(self, link: Link) -> None:
        """Read ``link`` until it closes; then end it with the close's code and reason."""
        ws = link.ws
        try:
            while True:
                message = await ws.get_message()
                self.receive(message, link.binary)
        except trio_websocket.ConnectionClosed as closed:
            reason = closed.reason
            code = reason.code if reason is not None else ABNORMAL
            link.end(int(code), (reason.reason if reason is not None else None) or "")

    def receive(self, message: str | bytes, binary: bool) -> None:
        """One frame from the server, in msgpack if ``binary``, else in JSON. Never
        raises: what cannot be read is logged and dropped, so bad input never ends
        the connection."""
        try:
            frame = _codec.decode(message, binary)
        except _codec.Unreadable as unreadable:
            logger.warning("%s: %s", self._url, unreadable)
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            logger.warning("%s: dropped a frame that is not a message: %.80r", self._url, message)
            return
        if "ok" not in frame:
            if self._positions is not None:
                self._positions.observe(frame)
            topic, offset, epoch = frame.get("topic"), frame.get("offset"), frame.get("epoch")
            self._events.deliver(
                Event(
                    frame["type"],
                    topic if isinstance(topic, str) else None,
                    frame.get("data"),
                    offset if type(offset) is int else None,
                    epoch if isinstance(epoch, str) else None,
                )
            )
            return
        self._requests.reply(frame, message)
