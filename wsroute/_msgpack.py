"""The ``wsroute.v1.msgpack`` subprotocol: the JSON protocol's envelope and rules,
each message one msgpack map in one binary frame.

Client frames decode to the same :class:`~wsroute._protocol.ClientMessage` as JSON
ones and go through the same checks, so handlers and error codes are the same; only
a frame that is not msgpack has its own code, ``invalid_msgpack``. What msgpack has
and JSON has not is refused, so that every message can be sent to a JSON client too:
extension types (timestamps included) and map keys that are not strings. Binary
values are ``bytes``, which JSON clients receive as base64 text.

Server messages are made as JSON (``_protocol``) and encoded again here, once per
message for every msgpack connection (``ENCODING``, see ``_wire.framing``).
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgpack
import orjson

from ._errors import ProtocolError
from ._protocol import INVALID_MSGPACK, JSON_KEYS, ClientMessage, envelope, pack
from ._wire.frames import OP_BINARY, Prepared
from ._wire.framing import Encoding

SUBPROTOCOL: Final = "wsroute.v1.msgpack"
#: The JSON protocol's name, for clients that ask for it by name.
JSON_SUBPROTOCOL: Final = "wsroute.v1.json"

# Bytes that may begin a binary value (bin 8/16/32) or a timestamp (ext type -1 as
# fixext 4, fixext 8 or ext 8 of 12 bytes). Frames holding none of them (most) cannot
# hold a bytes key or a timestamp, and skip the walk that looks for one.
_SUSPECTS: Final = (b"\xc4", b"\xc5", b"\xc6", b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")

# msgpack raises these two without a message: the error reply says what they mean.
_SILENT: Final = {
    msgpack.exceptions.FormatError: "a byte that msgpack never uses (0xc1)",
    msgpack.exceptions.StackError: "nested deeper than 1024 levels",
}


def _refuse_extension(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} is not part of the protocol")


def decode(data: bytes) -> ClientMessage:
    """Decode one client binary frame.

    Raises:
        ProtocolError: ``invalid_msgpack`` (not one msgpack value, or one JSON could
            not say), or ``invalid_message`` (the envelope, as for JSON).
    """
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_extension)
        if any(suspect in data for suspect in _SUSPECTS):
            _check(obj)
    except ValueError as exc:  # every error of msgpack's is one
        reason = str(exc) or _SILENT.get(type(exc), type(exc).__name__)
        raise ProtocolError(INVALID_MSGPACK, f"frame is not valid msgpack: {reason}") from None
    return envelope(obj, "a msgpack map")


def _check(obj: Any) -> None:
    """Refuse what JSON cannot say besides binary: timestamps and non-string keys.
    Iterative: msgpack's own depth limit bounds the stack."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"map keys must be strings, not {type(key).__name__}")
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, msgpack.Timestamp):
            raise ValueError("extension type -1 (timestamp) is not part of the protocol")


def encode(frame: Prepared) -> bytes:
    """A server message in msgpack: from its value when it has one (its bytes stay
    binary), else from its JSON."""
    if frame.value is not None:
        try:
            return pack(as_json(frame.value))
        except (TypeError, ValueError):
            pass  # something only JSON's encoder knows: its JSON says it all the same
    return pack(orjson.loads(frame.payload))


def as_json(value: Any) -> Any:
    """``value`` as JSON would carry it, bytes aside: every map key a string written
    as JSON writes it (``1`` as ``"1"``), NaN and infinities as null; so that both
    formats carry the same message."""
    if isinstance(value, dict):
        return {
            key if type(key) is str else _json_key(key): as_json(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if type(value) is float and not math.isfinite(value):
        return None
    return value


def _json_key(key: Any) -> str:
    written: dict[str, Any] = orjson.loads(orjson.dumps({key: None}, option=JSON_KEYS))
    return next(iter(written))


#: How a msgpack connection's messages are framed.
ENCODING: Final = Encoding("msgpack", OP_BINARY, encode)
