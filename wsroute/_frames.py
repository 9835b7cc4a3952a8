"""Reading the common client frame without wsproto: a fast path, sans-IO.

Almost every frame a wsroute server receives is one whole text message: FIN set, no
RSV bits, masked (RFC 6455 section 5.3), under 64 KiB, UTF-8. wsproto parses each
through a chain of generators, a buffer object and a per-byte masker: about a
quarter of a request's cost in the rpc benchmark. ``split_text_frames`` takes such
frames off the front of what was read and leaves everything else (control frames,
binary, fragments, anything malformed, a frame not yet whole) to wsproto, which
then sees exactly the bytes it would have seen after those frames; the caller only
uses it when wsproto holds nothing unparsed (``WebSocket._wsproto_idle``).

Most connections then end with a close frame from the client: ``read_close`` reads
one that wsproto would accept, and ``close_answer`` frames the answer wsproto would
send, so that the common end of a connection skips wsproto too.
"""

from __future__ import annotations

#: FIN and the text opcode, no RSV bits: the first byte of a whole text message.
_FIN_TEXT = 0x81
#: FIN and the close opcode, no RSV bits.
_FIN_CLOSE = 0x88
#: The close codes below 3000 a peer may send, as wsproto sees it (RFC 6455 section
#: 7.4): those it defines, less the ones only an endpoint may report (1005, 1006,
#: 1015). Every code from 3000 to 4999 may be sent too.
_PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask``: as one big integer, which
    CPython does in C, rather than byte by byte."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def split_text_frames(data: bytes | bytearray, max_size: int) -> tuple[list[str], int]:
    """The whole, masked, unfragmented text messages at the start of ``data``,
    unmasked and decoded, and how many bytes of ``data`` they took.

    Stops at the first frame that is anything else: another opcode, a fragment, RSV
    bits, no mask, a 64-bit length or a length not in its shortest form (wsproto
    fails those), more than ``max_size`` bytes, UTF-8 that does not decode, or a
    frame not yet whole.
    """
    messages: list[str] = []
    pos = 0
    end = len(data)
    while end - pos >= 6:
        if data[pos] != _FIN_TEXT:
            break
        length = data[pos + 1] ^ 0x80  # the mask bit must be set
        if length < 126:
            start = pos + 6
        elif length == 126 and end - pos >= 8:
            length = (data[pos + 2] << 8) | data[pos + 3]
            if length < 126:
                break  # not the shortest form: a protocol error for wsproto to report
            start = pos + 8
        else:
            break  # no mask bit (length > 127), a 64-bit length, or not yet whole
        stop = start + length
        if stop > end or length > max_size:
            break
        try:
            messages.append(_unmask(data[start:stop], data[start - 4 : start]).decode())
        except UnicodeDecodeError:
            break  # wsproto closes with 1007
        pos = stop
    return messages, pos


def read_close(data: bytes | bytearray) -> tuple[int, str] | None:
    """If ``data`` is exactly one whole, masked close frame that wsproto would
    accept, its code (1005 when it has none) and reason; else ``None``, and wsproto
    reads it (and fails the connection if it must: 1002 for a bad code or length,
    1007 for a reason that is not UTF-8)."""
    size = len(data)
    if size < 6 or data[0] != _FIN_CLOSE:
        return None
    length = data[1] ^ 0x80  # the mask bit must be set
    if length > 125 or length == 1 or size != 6 + length:
        return None
    if not length:
        return 1005, ""
    payload = _unmask(data[6:], data[2:6])
    code = (payload[0] << 8) | payload[1]
    if code not in _PEER_CODES and not 3000 <= code <= 4999:
        return None
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        return None


def close_answer(code: int, reason: str) -> bytes:
    """The server's answer to the peer's close frame ``read_close`` read, as wsproto
    frames it: the same code and reason, or no payload for 1005 (no code)."""
    if code == 1005:
        return b"\x88\x00"
    payload = code.to_bytes(2, "big") + reason.encode()
    return bytes((_FIN_CLOSE, len(payload))) + payload
