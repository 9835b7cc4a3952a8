"""WebSocket frames (RFC 6455 section 5): opcodes, headers, masking, close payloads.

Pure functions over bytes. A server's data frames are never masked, so framing one
is a header and the payload; ``Prepared`` frames a message once for every
recipient of a broadcast.
"""

from __future__ import annotations

import struct
from typing import Final

from . import closes
from .closes import ABNORMAL, NO_STATUS
from .closes import is_receivable as is_receivable_code
from .closes import is_sendable as is_sendable_code

__all__ = ["ABNORMAL", "NO_STATUS", "is_receivable_code", "is_sendable_code"]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

FIN: Final = 0x80
#: The RSV1 bit, which permessage-deflate (RFC 7692) uses to mark a compressed message.
RSV1: Final = 0x40

#: The longest payload of a control frame (RFC 6455 section 5.5).
MAX_CONTROL_PAYLOAD: Final = 125
#: The longest close reason: a control frame's payload less the two-byte code.
MAX_CLOSE_REASON: Final = MAX_CONTROL_PAYLOAD - 2

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def header(
    opcode: int, length: int, *, fin: bool = True, rsv: int = 0, masked: bool = False
) -> bytes:
    """A frame header for a payload of ``length`` bytes (the mask key not included)."""
    first = (FIN if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return _SHORT.pack(first, mask_bit | length)
    if length < 65536:
        return _MEDIUM.pack(first, mask_bit | 126, length)
    return _LONG.pack(first, mask_bit | 127, length)


def mask(payload: bytes | bytearray | memoryview, key: bytes | bytearray) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``key`` (masking and unmasking are the
    same), as one big integer: CPython does that in C, not byte by byte."""
    size = len(payload)
    if not size:
        return b""
    stream = (key * ((size >> 2) + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        size, "little"
    )


def encode(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
) -> bytes:
    """A whole frame; masked with ``key`` when one is given (a client's frames)."""
    if key is None:
        return header(opcode, len(payload), fin=fin, rsv=rsv) + payload
    return header(opcode, len(payload), fin=fin, rsv=rsv, masked=True) + key + mask(payload, key)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: nothing for 1005 (no status), else the code and
    the reason in UTF-8.

    Raises:
        ValueError: the code may not be sent, or the reason is over 123 bytes.
    """
    if code == NO_STATUS:
        if reason:
            raise ValueError("a close frame without a code has no reason either")
        return b""
    if not is_sendable_code(code):
        raise ValueError(f"close code {code} may not be sent")
    data = reason.encode()
    if len(data) > MAX_CLOSE_REASON:
        raise ValueError(f"a close reason is at most {MAX_CLOSE_REASON} bytes of UTF-8")
    return code.to_bytes(2, "big") + data


class ProtocolViolation(Exception):
    """The peer broke RFC 6455: the connection fails with ``code`` (1002, 1007)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a received close frame (1005 when it has no code).

    Raises:
        ProtocolViolation: one byte of payload or a code that may not be sent (1002),
            or a reason that is not UTF-8 (1007).
    """
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolViolation(*closes.ONE_BYTE_CLOSE)
    code = (payload[0] << 8) | payload[1]
    if not is_receivable_code(code):
        raise ProtocolViolation(*closes.invalid_close_code(code))
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolViolation(*closes.INVALID_UTF8_REASON) from None


class Prepared:
    """A message encoded and framed once, for any number of server connections.

    ``payload`` is its JSON text, which must be valid UTF-8 (orjson's output always
    is), and ``wire`` that text framed. ``value`` is the message itself, kept when
    the JSON text cannot say all of it (bytes, which JSON writes as base64 text),
    for other encodings to encode it from. ``cache`` holds what ``framing`` made of
    it for connections that encode or compress it otherwise, keyed by how: made once,
    sent to all of them.
    """

    __slots__ = ("cache", "payload", "value", "wire")

    def __init__(self, payload: bytes, value: object = None) -> None:
        self.payload = payload
        self.value = value
        self.wire = header(OP_TEXT, len(payload)) + payload
        self.cache: dict[object, bytes] | None = None


#: A message on its way to a client, as the outbox holds it: text (str), binary
#: (bytes), or already framed (Prepared).
Outgoing = str | bytes | Prepared


def server_frame(frame: Outgoing) -> bytes:
    """``frame`` on the wire, from a server (unmasked)."""
    if isinstance(frame, Prepared):
        return frame.wire
    if isinstance(frame, str):
        data = frame.encode()
        return header(OP_TEXT, len(data)) + data
    return header(OP_BINARY, len(frame)) + frame
