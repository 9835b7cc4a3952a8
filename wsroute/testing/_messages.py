"""What the test client receives, and the errors its expectations raise."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from msgpack import unpackb

from .._request import Headers


@attrs.frozen
class Reply:
    """A successful reply ``{"type", "id"?, "ok": true, "data"}``."""

    type: str
    id: int | str | None
    data: Any


@attrs.frozen
class ErrorReply:
    """An error reply ``{"type", "id"?, "ok": false, "error": {...}}``."""

    type: str
    id: int | str | None
    code: str
    message: str
    details: Any = None


@attrs.frozen
class Event:
    """An event ``{"type", "topic"?, "data", "offset"?, "epoch"?}`` (a broadcast or a
    push); ``offset`` and ``epoch`` when its topic has history."""

    type: str
    topic: str | None
    data: Any
    offset: int | None = None
    epoch: str | None = None

    def __repr__(self) -> str:  # the position only where there is one
        position = f", offset={self.offset!r}, epoch={self.epoch!r}" if self.epoch else ""
        return f"Event(type={self.type!r}, topic={self.topic!r}, data={self.data!r}{position})"


@attrs.frozen
class CloseInfo:
    """The close code and reason the server sent."""

    code: int
    reason: str


Message = Reply | ErrorReply | Event


def parse_message(message: str | bytes, *, msgpack: bool = False) -> Message:
    """Decode a server frame; raise ``AssertionError`` if it breaks protocol v1.

    With ``msgpack``, the frame must be binary and hold one msgpack map (the
    ``wsroute.v1.msgpack`` subprotocol); otherwise text holding one JSON object.
    """
    obj: Any
    if msgpack:
        if isinstance(message, str):
            raise AssertionError(f"server sent a text frame under msgpack: {message[:200]}")
        try:
            obj = unpackb(message, raw=False)
        except ValueError:
            raise AssertionError(f"server frame is not msgpack: {message[:80]!r}") from None
    else:
        if isinstance(message, bytes):
            raise AssertionError(f"server sent a binary frame: {message[:80]!r}")
        try:
            obj = orjson.loads(message)
        except orjson.JSONDecodeError:
            raise AssertionError(f"server frame is not JSON: {message[:200]}") from None
    shown = message[:200] if isinstance(message, str) else repr(obj)[:200]
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise AssertionError(f"server frame is not a protocol v1 object: {shown}")
    if "ok" not in obj:
        assert set(obj) <= {"type", "topic", "data", "offset", "epoch"}, f"malformed event: {shown}"
        offset, epoch = obj.get("offset"), obj.get("epoch")
        if offset is not None or epoch is not None:
            assert type(offset) is int and offset > 0 and isinstance(epoch, str) and epoch, (
                f"an event's offset and epoch come together, a positive integer and text: {shown}"
            )
            assert isinstance(obj.get("topic"), str), (
                f"an event with an offset has a topic: {shown}"
            )
        return Event(obj["type"], obj.get("topic"), obj.get("data"), offset, epoch)
    if obj["ok"] is True:
        assert set(obj) <= {"type", "id", "ok", "data"}, f"malformed reply: {shown}"
        return Reply(obj["type"], obj.get("id"), obj.get("data"))
    error = obj.get("error")
    assert isinstance(error, dict), f"malformed error reply: {shown}"
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), (
        f"an error reply's error has a code and a message: {shown}"
    )
    return ErrorReply(
        obj["type"], obj.get("id"), error["code"], error["message"], error.get("details")
    )


class RequestError(Exception):
    """``client.request`` got an error reply; ``code``/``message``/``details`` are its own."""

    def __init__(self, reply: ErrorReply) -> None:
        # The details too: an uncaught one is a failing test's message, and for
        # invalid_data only they say which field was wrong and why.
        details = "" if reply.details is None else f"; details: {reply.details!r}"
        super().__init__(f"{reply.code}: {reply.message}{details}")
        self.reply = reply
        self.code = reply.code
        self.message = reply.message
        self.details = reply.details


class HandshakeRejected(Exception):
    """The server refused the WebSocket upgrade: ``status``, ``body`` and ``headers``
    (case-insensitive) of its HTTP response."""

    def __init__(self, status: int, body: bytes, headers: Headers) -> None:
        super().__init__(f"handshake rejected with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body
        self.headers = headers


class ClientClosed(Exception):
    """The connection is closed; ``close`` holds the server's code and reason."""

    def __init__(self, close: CloseInfo | None) -> None:
        super().__init__(f"connection closed: {close}")
        self.close = close


class ExpectationFailed(AssertionError):
    """An ``expect_*`` call did not see what it waited for; says what arrived instead."""

    def __init__(
        self,
        wanted: str,
        received: list[Message],
        closed: CloseInfo | None,
        *,
        waited: float | None = None,
    ) -> None:
        lines = [f"expected {wanted}" + (f" within {waited:g} s" if waited is not None else "")]
        if received:
            lines.append(f"received instead ({len(received)}):")
            lines.extend(f"  {frame!r}" for frame in received)
        else:
            lines.append("received nothing")
        if closed is not None:
            lines.append(f"the server closed the connection: {closed.code} {closed.reason!r}")
        super().__init__("\n".join(lines))
        self.wanted = wanted
        self.received = received
        self.closed = closed
