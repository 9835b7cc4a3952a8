"""Reaching users and connections anywhere: topic names and what travels on them.

Every connection is subscribed to ``conn:<id>`` and, when the accept hook identified a
user, ``user:<user id>``. Sending to a user or connection is then a publish like any
other, and reaches every process that shares the broker.

The broker carries bytes. Three kinds of message travel on a topic:

- a client frame (a JSON object, so its first byte is ``{``): every subscriber gets it;
- ``\\x01`` + sender connection id + ``\\n`` + frame: every subscriber but the sender
  (``broadcast(..., exclude_sender=True)``);
- ``\\x02`` + a JSON control message: not for the client but for its connection: an
  ``info`` message for an info handler, or ``close``.

Pure: no trio, so the encoding is tested by feeding it bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson

from .._protocol import json_default

CONN_TOPIC: Final = "conn:"
USER_TOPIC: Final = "user:"
EXCLUDING: Final = 0x01
CONTROL: Final = 0x02


def conn_topic(conn_id: str) -> str:
    return CONN_TOPIC + conn_id


def user_topic(user_id: object) -> str:
    return USER_TOPIC + str(user_id)


def default_user_id(user: Any) -> str | None:
    """The id of what an accept hook returned: itself if a str or int, else its
    ``id`` attribute or ``"id"`` key; ``None`` (no user topic) otherwise."""
    if user is None or isinstance(user, bool):
        return None
    if isinstance(user, str | int):
        return str(user)
    found = user.get("id") if isinstance(user, Mapping) else getattr(user, "id", None)
    if found is None or isinstance(found, bool) or not isinstance(found, str | int):
        return None
    return str(found)


def encode_excluding(sender_id: str, frame: bytes) -> bytes:
    """A frame for every subscriber except connection ``sender_id``."""
    return bytes([EXCLUDING]) + sender_id.encode() + b"\n" + frame


def encode_info(type: str, data: Any) -> bytes:
    """A message for the info handler ``type`` of every subscribed connection.

    ``bytes`` in ``data`` go as base64 text, which a ``bytes`` field reads back.
    """
    message = {"op": "info", "type": type, "data": data}
    return bytes([CONTROL]) + orjson.dumps(message, default=json_default)


def encode_close(code: int, reason: str) -> bytes:
    """An order to close every subscribed connection."""
    return bytes([CONTROL]) + orjson.dumps({"op": "close", "code": code, "reason": reason})


class Control(NamedTuple):
    """A decoded control message."""

    op: str
    type: str
    data: Any
    code: int
    reason: str


def decode_control(data: bytes) -> Control:
    """Decode what follows the CONTROL byte; raises ValueError if it is malformed."""
    try:
        obj = orjson.loads(data[1:])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed control message: {exc}") from None
    if not isinstance(obj, dict) or obj.get("op") not in ("info", "close"):
        raise ValueError(f"malformed control message: {data[:80]!r}")
    return Control(
        obj["op"],
        str(obj.get("type", "")),
        obj.get("data"),
        int(obj.get("code", 1000)),
        str(obj.get("reason", "")),
    )
