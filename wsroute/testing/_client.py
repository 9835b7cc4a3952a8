"""The test kit's client: one connection to an app, its messages sent and expected.

A :class:`TestClient` sends requests and raw frames and waits for replies, events or
the close, keeping what an ``expect_*`` call skips for later calls; every wait has a
timeout, which ``autojump_clock`` makes instant. ``_open`` connects it to an app.
"""

from __future__ import annotations

import base64
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import trio
from msgpack import packb

from .._msgpack import SUBPROTOCOL as MSGPACK
from ._connection import ClientConnection, Closed
from ._messages import (
    ClientClosed,
    CloseInfo,
    ErrorReply,
    Event,
    ExpectationFailed,
    Message,
    Reply,
    RequestError,
    parse_message,
)

#: Default seconds an ``expect_*``/``request`` call waits (instant under autojump_clock).
DEFAULT_TIMEOUT = 5.0
#: Default seconds ``expect_no_message`` listens.
QUIET_PERIOD = 0.1


class TestClient:
    """One connected client. Frames it receives are decoded to Reply/ErrorReply/Event.

    Frames skipped by an ``expect_*`` call are kept, in order, for later calls.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        #: Messages are msgpack in binary frames, as the server chose.
        self._msgpack = ws.subprotocol == MSGPACK
        self._kept: deque[Message] = deque()
        self._ids = itertools.count(1)
        self._closed: CloseInfo | None = None

    @property
    def closed(self) -> CloseInfo | None:
        """The close code and reason once the connection is closed, else ``None``."""
        if self._closed is None and self._ws.closed is not None:
            self._closed = self._ws.closed
        return self._closed

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server selected, if any."""
        return self._ws.subprotocol

    @property
    def compression(self) -> str | None:
        """The permessage-deflate the server agreed to (its ``Sec-WebSocket-Extensions``
        answer), or ``None`` for an uncompressed connection."""
        return self._ws.compression

    # -- sending -----------------------------------------------------------------------

    async def send(self, type: str, data: Any = None, *, id: int | str | None = None) -> None:
        """Send ``{"type", "id"?, "data"?}``; ``data=None`` leaves ``data`` out.

        In the format the server chose: msgpack in a binary frame under
        ``wsroute.v1.msgpack`` (``bytes`` as binary), else JSON text (``bytes`` as
        base64, which is what a ``bytes`` field takes in JSON).
        """
        frame: dict[str, Any] = {"type": type}
        if id is not None:
            frame["id"] = id
        if data is not None:
            frame["data"] = data
        if self._msgpack:
            await self.send_raw(packb(frame))
        else:
            await self.send_raw(orjson.dumps(frame, default=_base64).decode())

    async def send_raw(self, message: str | bytes) -> None:
        """Send a frame as is: text for ``str``, binary for ``bytes``."""
        try:
            await self._ws.send_message(message)
        except Closed:
            raise ClientClosed(self.closed) from None

    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """Send a request with a fresh id and return its reply's ``data``.

        Raises:
            RequestError: the server answered with an error reply.
            ExpectationFailed: no reply within ``timeout``, or the connection closed.
        """
        request_id = f"t{next(self._ids)}"
        await self.send(type, data, id=request_id)
        reply = await self.expect_reply(request_id, timeout=timeout)
        if isinstance(reply, ErrorReply):
            raise RequestError(reply)
        return reply.data

    # -- receiving ---------------------------------------------------------------------

    async def _next(self) -> Message:
        try:
            message = await self._ws.get_message()
        except Closed:
            raise ClientClosed(self.closed) from None
        return parse_message(message, msgpack=self._msgpack)

    async def receive(self, *, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next frame (kept ones first).

        Raises:
            ExpectationFailed: nothing arrived within ``timeout``, or the server closed.
        """
        if self._kept:
            return self._kept.popleft()
        return await self._expect(lambda frame: True, "any frame", timeout)

    async def receive_raw(self, *, timeout: float = DEFAULT_TIMEOUT) -> str | bytes:
        """The next frame exactly as sent (for apps with a frame handler).

        Raises:
            ExpectationFailed: nothing arrived within ``timeout``, or the server closed.
        """
        with trio.move_on_after(timeout):
            try:
                message: str | bytes = await self._ws.get_message()
            except Closed:
                raise ExpectationFailed("a frame", [], self.closed) from None
            return message
        raise ExpectationFailed("a frame", [], self.closed, waited=timeout)

    async def expect_event(
        self, type: str, *, topic: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Event:
        """Wait for an event of ``type`` (and ``topic``, when given); return it."""

        def match(frame: Message) -> bool:
            return (
                isinstance(frame, Event)
                and frame.type == type
                and (topic is None or frame.topic == topic)
            )

        wanted = f"event {type!r}" + (f" on topic {topic!r}" if topic is not None else "")
        event = await self._expect(match, wanted, timeout)
        assert isinstance(event, Event)
        return event

    async def expect_reply(
        self, id: int | str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Reply | ErrorReply:
        """Wait for the reply (or error reply) to the request with ``id``."""

        def match(frame: Message) -> bool:
            return isinstance(frame, Reply | ErrorReply) and frame.id == id

        reply = await self._expect(match, f"reply to id {id!r}", timeout)
        assert isinstance(reply, Reply | ErrorReply)
        return reply

    async def expect_no_message(self, *, timeout: float = QUIET_PERIOD) -> None:
        """Assert that nothing arrives for ``timeout`` seconds (and nothing is kept)."""
        if self._kept:
            raise ExpectationFailed("no message", list(self._kept), self.closed)
        with trio.move_on_after(timeout):
            try:
                frame = await self._next()
            except ClientClosed:
                return
            self._kept.append(frame)
            raise ExpectationFailed("no message", list(self._kept), self.closed)

    async def _expect(
        self, match: Callable[[Message], bool], wanted: str, timeout: float
    ) -> Message:
        for index, frame in enumerate(self._kept):
            if match(frame):
                del self._kept[index]
                return frame
        seen_before = len(self._kept)
        with trio.move_on_after(timeout):
            while True:
                try:
                    frame = await self._next()
                except ClientClosed:
                    break
                if match(frame):
                    return frame
                self._kept.append(frame)
        raise ExpectationFailed(wanted, list(self._kept)[seen_before:], self.closed, waited=timeout)

    # -- closing -----------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client side (idempotent)."""
        await self._ws.aclose(code, reason)

    async def wait_closed(self, *, timeout: float = DEFAULT_TIMEOUT) -> CloseInfo:
        """Read until the server closes; return its close code and reason.

        Frames read meanwhile are kept for later ``expect_*`` calls.
        """
        with trio.move_on_after(timeout):
            while True:
                try:
                    self._kept.append(await self._next())
                except ClientClosed as exc:
                    assert exc.close is not None
                    return exc.close
        raise ExpectationFailed("the connection to close", list(self._kept), None, waited=timeout)


def _base64(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot send a {type(value).__name__} in JSON")
