"""How the client writes and reads messages: JSON in text frames, or msgpack in
binary frames when the server selected ``wsroute.v1.msgpack``. The envelope is the
same either way (docs/protocol.md).

``bytes`` in a payload go as msgpack binary, or in JSON as base64 text, which a
server's ``bytes`` field takes as well. A reply's ``bytes`` come back the same ways;
the client's converter structures either into ``bytes``. What msgpack could say and
JSON could not (map keys that are not strings, NaN) is written as JSON writes it, as
the server writes its own messages: the same data makes the same message in both.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack
import orjson

from .._msgpack import as_json
from .._protocol import JSON_KEYS, json_default

#: Marks ``bytes`` in a replay key, so that they never equal the text of their base64.
_BYTES_TAG: Final = "\x00bytes"


class Unreadable(ValueError):
    """A frame from the server that cannot be used: what the client logs."""


def message(type: str, request_id: int | None, data: Any) -> dict[str, Any]:
    """A client message: ``{"type", "id"?, "data"?}``."""
    frame: dict[str, Any] = {"type": type}
    if request_id is not None:
        frame["id"] = request_id
    if data is not None:
        frame["data"] = data
    return frame


def encode(frame: dict[str, Any], binary: bool) -> str | bytes:
    """``frame`` as a text frame of JSON, or with ``binary`` a binary frame of msgpack.

    Raises:
        TypeError: it holds something that cannot be written (an integer beyond 64
            bits included, in either format).
    """
    if not binary:
        return orjson.dumps(frame, option=JSON_KEYS, default=json_default).decode()
    try:
        data: bytes = msgpack.packb(as_json(frame), default=_via_json)
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"cannot be written as msgpack: {exc}") from None
    return data


def _via_json(value: Any) -> Any:
    """msgpack's hook for what it cannot write: what orjson makes of it (a datetime
    as ISO text, a UUID as text), bytes inside kept binary."""
    return orjson.loads(orjson.dumps(value, option=JSON_KEYS, default=json_default))


def decode(frame: str | bytes, binary: bool) -> Any:
    """The value of a frame from the server, if it is in the connection's format.

    Raises:
        Unreadable: a frame of the other kind, or not JSON or msgpack; says which.
    """
    if binary:
        if isinstance(frame, str):
            raise Unreadable(f"dropped a text frame of {len(frame)} characters")
        try:
            return msgpack.unpackb(frame, raw=False)
        except ValueError as exc:  # every error of msgpack's is one
            why = str(exc) or type(exc).__name__
            raise Unreadable(
                f"dropped a frame that is not msgpack ({why}): {frame!r:.80}"
            ) from None
    if isinstance(frame, bytes):
        raise Unreadable(f"dropped a binary frame of {len(frame)} bytes")
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise Unreadable(f"dropped a frame that is not JSON: {frame!r:.80}") from None


def replay_key(type: str, data: Any) -> bytes:
    """What makes two replayed requests the same one: type and data, key order aside.

    Raises:
        TypeError: ``data`` cannot be written.
    """
    return orjson.dumps(
        [type, data], option=orjson.OPT_SORT_KEYS | JSON_KEYS, default=_tagged_bytes
    )


def _tagged_bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {_BYTES_TAG: json_default(value)}
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
