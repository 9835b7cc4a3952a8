"""How a kept event travels on its topic's channel, and how a plain publish that could
be mistaken for one is escaped.

A kept event is published, by the script that keeps it (``kept.py``), on the topic's
usual channel (``<prefix><topic>``; on a cluster ``<prefix>{<topic>}`` with
``SPUBLISH``, in the slot of the keys) as::

    0x04 <offset, ASCII decimal> ":" <epoch> "\\n" <data>

for example ``b"\\x0457:5f1c0e9a2b7d\\n{...}"``: 15 bytes and the offset's digits more
than the data, put together in Lua by concatenation alone. A plain ``publish`` whose
data starts with byte 0x04 or 0x05 is sent as 0x05 followed by the data, so the
reader removes one 0x05 and never mistakes it for a kept event. Any other payload
travels unchanged (the hot path costs one look at the first byte); wsroute's own
payloads start with 0x01 to 0x03 or ``{``.

The sessions (``session.py``, ``clustered.py``) and presence (``present.py``) frame,
escape and read payloads with the functions here; the script builds the same frame in
Lua.
"""

from __future__ import annotations

from typing import Final

from ..._history import Position

#: First byte of a payload that carries its position in the topic's history.
KEPT: Final = 0x04
#: First byte put before a plain payload that would otherwise start with 0x04 or 0x05.
ESCAPE: Final = b"\x05"
#: First bytes that a plain payload may not start with as it is.
MARKED: Final = (b"\x04", b"\x05")
#: The longest ``<offset>:<epoch>`` head a reader looks for (20 digits, 64 characters).
_HEAD_LIMIT: Final = 1 + 20 + 1 + 64 + 1


def frame(data: bytes, position: Position) -> bytes:
    """The channel payload of a kept event, as the script makes it."""
    return b"\x04%d:%s\n%s" % (position.offset, position.epoch.encode(), data)


def escape(data: bytes) -> bytes:
    """``data`` as a plain publish sends it (see the module docstring)."""
    return ESCAPE + data if data.startswith(MARKED) else data


def unframe(payload: bytes) -> tuple[bytes, Position | None]:
    """The data and position in a channel payload that starts with 0x04 or 0x05.

    Raises:
        ValueError: a 0x04 payload without a well-formed head.
    """
    if payload[0] != KEPT:
        return payload[1:], None
    end = payload.find(b"\n", 1, _HEAD_LIMIT)
    offset, colon, epoch = payload[1:end].partition(b":")
    if end < 0 or not colon or not offset.isdigit() or not epoch:
        raise ValueError(f"a kept event without its position: {payload[:_HEAD_LIMIT]!r}")
    return payload[end + 1 :], Position(int(offset), epoch.decode())
