"""Wire protocol v1: the envelope, and JSON text frames in and out.

Sans-IO: plain functions over strings and small frozen objects, no trio, no sockets,
so the codec is tested by feeding it text (the h11/wsproto way). ``docs/protocol.md``
is the user-facing description; the constants below are its single source of truth.

Every server message is made as JSON; ``_msgpack`` encodes it again for connections
that chose msgpack. ``bytes`` in a message are written as base64 text in JSON; such a
message keeps its value (``Prepared.value``) so that msgpack writes them as binary,
and crosses the broker as msgpack (``MSGPACK_EVENT``) rather than JSON.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final, NamedTuple

import msgpack
import orjson

from ._errors import ProtocolError
from ._history import Position
from ._wire.frames import Prepared

#: ``id`` may be an integer in this closed range (JavaScript's safe integers) ...
MAX_SAFE_INTEGER: Final = 2**53
#: ... or a string of at most this many characters.
MAX_ID_LENGTH: Final = 64
#: ``type`` is a non-empty string of at most this many characters.
MAX_TYPE_LENGTH: Final = 128
ENVELOPE_KEYS: Final = frozenset({"type", "id", "data"})
#: Used as ``type`` of an error reply when the frame's type or id cannot be read.
ERROR_TYPE: Final = "error"
#: Message types with this prefix belong to the protocol; no handler may take one.
RESERVED_PREFIX: Final = "wsroute."
#: The event that ends a topic's recovery (docs/history.md): recovered or not.
RECOVERY_TYPE: Final = "wsroute.recovery"

# Stable error codes (documented in docs/protocol.md).
INVALID_JSON: Final = "invalid_json"
INVALID_MSGPACK: Final = "invalid_msgpack"
INVALID_MESSAGE: Final = "invalid_message"
UNKNOWN_TYPE: Final = "unknown_type"
INVALID_DATA: Final = "invalid_data"
INTERNAL_ERROR: Final = "internal_error"
OVERLOADED: Final = "overloaded"
BROKER_UNAVAILABLE: Final = "broker_unavailable"
RATE_LIMITED: Final = "rate_limited"
TIMEOUT: Final = "timeout"
NO_PRESENCE: Final = "no_presence"
NOT_SUBSCRIBED: Final = "not_subscribed"

#: The protocol's own requests (docs/presence.md): who is on a topic, and how many.
PRESENCE_TYPE: Final = "wsroute.presence"
PRESENCE_STATS_TYPE: Final = "wsroute.presence_stats"
PRESENCE_REQUESTS: Final = frozenset({PRESENCE_TYPE, PRESENCE_STATS_TYPE})


_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
# orjson silently turns integers beyond 64 bits into floats. Any such literal has at
# least 19 digits, so frames without a 19-digit run (nearly all) skip the slow check.
# The run is looked for with every digit mapped to "0" and anything else to a space
# (bytes.translate and a substring search, both in C: a third of a regex's time).
_DIGITS_AS_ZEROS: Final = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_LONG_DIGIT_RUN: Final = b"0" * 19
# The slow check: walk string and number tokens (strings skipped whole, so digits in
# text never count); iterative, so nesting depth does not matter.
_TOKENS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')
#: Map keys that are not strings are written as strings (``1`` as ``"1"``).
JSON_KEYS: Final = orjson.OPT_NON_STR_KEYS
#: The first byte of a broker payload that is an event in msgpack (it holds bytes):
#: JSON never starts with it (nor with the other kinds, see _server/addressing.py).
MSGPACK_EVENT: Final = 0x03


class ClientMessage(NamedTuple):
    """One decoded client frame: ``{"type": ..., "id": ..., "data": ...}``."""

    type: str
    id: int | str | None
    data: Any


def decode(text: str | bytes) -> ClientMessage:
    """Decode one client text frame.

    Raises:
        ProtocolError: with code ``invalid_json`` or ``invalid_message``; its ``type``
            and ``id`` are set only when both could be read.
    """
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(INVALID_JSON, f"frame is not valid JSON: {exc}") from None
    data = text if isinstance(text, bytes) else text.encode()
    if _LONG_DIGIT_RUN in data.translate(_DIGITS_AS_ZEROS):
        if isinstance(text, bytes):
            text = text.decode()  # orjson accepted it, so it is valid UTF-8
        _reject_wide_integers(text)
    return envelope(obj, "a JSON object")


def envelope(obj: Any, kind: str) -> ClientMessage:
    """The envelope of a decoded frame, checked; ``kind`` names what a frame must be
    in its format, for the error.

    Raises:
        ProtocolError: ``invalid_message``.
    """
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_MESSAGE, f"frame must be {kind}")
    type_ = obj.get("type")
    if not isinstance(type_, str) or not 0 < len(type_) <= MAX_TYPE_LENGTH:
        raise ProtocolError(
            INVALID_MESSAGE,
            f'"type" must be a string of 1 to {MAX_TYPE_LENGTH} characters',
        )
    id_ = obj.get("id")
    if id_ is not None and not _valid_id(id_):
        raise ProtocolError(
            INVALID_MESSAGE,
            f'"id" must be an integer within ±2^53 or a string of at most {MAX_ID_LENGTH}'
            " characters",
        )
    if len(obj) > 1 and not ENVELOPE_KEYS.issuperset(obj):
        extra = sorted(set(obj) - ENVELOPE_KEYS)
        raise ProtocolError(
            INVALID_MESSAGE,
            f"unexpected key(s) {', '.join(map(repr, extra))}: a frame has only"
            ' "type", "id" and "data"',
            type=type_,
            id=id_,
        )
    return ClientMessage(type_, id_, obj.get("data"))


def _valid_id(value: object) -> bool:
    if type(value) is int:  # bool is an int subclass and not a valid id
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH


def _reject_wide_integers(text: str) -> None:
    """Raise if an integer literal outside strings does not fit in 64 bits."""
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token[0] == '"' or "." in token or "e" in token or "E" in token:
            continue
        if len(token.lstrip("-")) >= 19 and not _INT64_MIN <= int(token) <= _UINT64_MAX:
            raise ProtocolError(
                INVALID_JSON,
                f"frame is not valid JSON: integer {token[:24]}... does not fit in 64 bits",
            )


def pack(value: Any) -> bytes:
    """``value`` in msgpack (bytes as binary).

    Raises:
        TypeError: something msgpack cannot write.
        ValueError: an integer beyond 64 bits.
    """
    data: bytes = msgpack.packb(value)
    return data


def json_default(value: Any) -> str:
    """orjson's hook for what it cannot write: bytes, as base64 text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def prepare(message: dict[str, Any]) -> Prepared:
    """``message`` encoded and framed once, for any number of connections.

    Raises:
        TypeError: it holds something neither JSON nor base64 can write.
    """
    try:
        return Prepared(orjson.dumps(message, option=JSON_KEYS))
    except TypeError:  # bytes, most likely: keep the value for msgpack
        return Prepared(orjson.dumps(message, option=JSON_KEYS, default=json_default), message)


def reply(type: str, id: int | str | None, data: Any) -> Prepared:
    """A successful reply: ``{"type", "id"?, "ok": true, "data"}``.

    Raises:
        TypeError: ``data`` cannot be written (see ``prepare``).
    """
    if id is None:
        return prepare({"type": type, "ok": True, "data": data})
    return prepare({"type": type, "id": id, "ok": True, "data": data})


def error(
    type: str | None,
    id: int | str | None,
    code: str,
    message: str,
    details: Any = None,
) -> Prepared:
    """An error reply: ``{"type", "id"?, "ok": false, "error": {"code", "message", "details"?}}``.

    A ``type`` of ``None`` (unreadable) becomes ``"error"``. Details that cannot be
    written are dropped rather than losing the error reply itself.
    """
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    frame: dict[str, Any] = {"type": ERROR_TYPE if type is None else type}
    if id is not None:
        frame["id"] = id
    frame["ok"] = False
    frame["error"] = error
    try:
        return prepare(frame)
    except TypeError:
        del error["details"]
        return prepare(frame)


def protocol_error(exc: ProtocolError) -> Prepared:
    """The error reply for a frame that could not be decoded."""
    return error(exc.type, exc.id, exc.code, exc.message, exc.details)


def _event(type: str, topic: str | None, data: Any) -> dict[str, Any]:
    if topic is None:
        return {"type": type, "data": data}
    return {"type": type, "topic": topic, "data": data}


def event(type: str, topic: str | None, data: Any) -> Prepared:
    """An event for connections of this process: ``{"type", "topic"?, "data"}``."""
    return prepare(_event(type, topic, data))


def encode_event(type: str, topic: str | None, data: Any) -> bytes:
    """An event as bytes for the broker, encoded once per broadcast: its JSON, or,
    when it holds bytes, ``MSGPACK_EVENT`` and its msgpack (JSON would lose them).

    Raises:
        TypeError: ``data`` cannot be written.
    """
    message = _event(type, topic, data)
    try:
        return orjson.dumps(message, option=JSON_KEYS)
    except TypeError:
        return bytes([MSGPACK_EVENT]) + pack(message)


def received_event(payload: bytes, position: Position | None = None) -> Prepared:
    """A broker payload made by ``encode_event``, ready for every subscriber; with
    the ``offset`` and ``epoch`` of its ``position`` in the topic's history, if kept.

    Raises:
        ValueError: a payload that does not decode.
    """
    if not payload or payload[0] != MSGPACK_EVENT:
        if position is None:
            return Prepared(payload)
        if payload[-1:] != b"}":
            raise ValueError("an event is a JSON object")
        offset, epoch = position
        return Prepared(b'%s,"offset":%d,"epoch":%s}' % (payload[:-1], offset, orjson.dumps(epoch)))
    message = msgpack.unpackb(payload[1:], raw=False)
    if not isinstance(message, dict):
        raise ValueError("an event is a msgpack map")
    if position is not None:
        message["offset"], message["epoch"] = position
    return Prepared(orjson.dumps(message, option=JSON_KEYS, default=json_default), message)


def decoded_event(payload: bytes) -> dict[str, Any]:
    """The message of a broker payload made by ``encode_event``.

    Raises:
        ValueError: a payload that does not decode to a message.
    """
    if payload[:1] == bytes([MSGPACK_EVENT]):
        message = msgpack.unpackb(payload[1:], raw=False)
    else:
        message = orjson.loads(payload)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("not an event")
    return message


def recovery(
    topic: str, recovered: bool, position: Position | None, missed: int, reason: str | None
) -> Prepared:
    """The event that ends a topic's recovery: ``{"type": "wsroute.recovery", "topic",
    "data": {"recovered", "offset", "epoch", "missed", "reason"?}}``."""
    data: dict[str, Any] = {
        "recovered": recovered,
        "offset": None if position is None else position.offset,
        "epoch": None if position is None else position.epoch,
        "missed": missed,
    }
    if reason is not None:
        data["reason"] = reason
    return event(RECOVERY_TYPE, topic, data)


#: The query parameter in which a client presents the positions it saw, per topic.
RECOVER_PARAM: Final = "wsroute.recover"
#: The most topics one connection may recover (what fits the request head, with room).
MAX_RECOVER_TOPICS: Final = 256
#: The longest epoch a client may present (the server's are at most 12 characters).
MAX_EPOCH_LENGTH: Final = 64


def parse_recover(text: str) -> dict[str, Position]:
    """The positions of a ``wsroute.recover`` query parameter: a JSON object of
    ``{"topic": [offset, "epoch"], ...}``.

    Raises:
        ValueError: what is wrong with it, in a sentence for the 400 answer.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(value, dict):
        raise ValueError('not a JSON object of {"topic": [offset, "epoch"]}')
    if len(value) > MAX_RECOVER_TOPICS:
        raise ValueError(f"more than {MAX_RECOVER_TOPICS} topics")
    positions = {}
    for topic, position in value.items():
        if not topic:
            raise ValueError("an empty topic")
        if not (
            isinstance(position, list)
            and len(position) == 2
            and type(position[0]) is int
            and 0 <= position[0] <= MAX_SAFE_INTEGER
            and isinstance(position[1], str)
            and 0 < len(position[1]) <= MAX_EPOCH_LENGTH
        ):
            raise ValueError(
                f"the position of {topic[:64]!r} is not [offset, epoch]: an integer from 0 to"
                f" 2^53 and a string of 1 to {MAX_EPOCH_LENGTH} characters"
            )
        positions[topic] = Position(position[0], position[1])
    return positions
