"""Reading the common client frame without wsproto: a fast path, sans-IO.

Almost every frame a wsroute server receives is one whole text message: FIN set, no
RSV bits, masked (RFC 6455 section 5.3), under 64 KiB, UTF-8. wsproto parses each
through a chain of generators, a buffer object and a per-byte masker: about a
quarter of a request's cost in the rpc benchmark. ``split_text_frames`` takes such
frames off the front of what was read and leaves everything else (control frames,
binary, fragments, anything malformed, a frame not yet whole) to wsproto, which
then sees exactly the bytes it would have seen after those frames; the caller only
uses it when wsproto holds nothing unparsed (``WebSocket._wsproto_idle``).
"""

from __future__ import annotations

#: FIN and the text opcode, no RSV bits: the first byte of a whole text message.
_FIN_TEXT = 0x81


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
