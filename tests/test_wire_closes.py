"""Close codes and reasons (wsroute/_wire/closes.py).

Which codes a peer may send is held against wsproto's and the ``websockets``
library's own rules; every close wsroute sends fits in a close frame and reads back.
"""

from __future__ import annotations

import pytest
from websockets.exceptions import ProtocolError
from websockets.frames import Close as WebsocketsClose
from wsproto.frame_protocol import Frame as WsprotoFrame
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from wsroute._wire import closes
from wsroute._wire.frames import close_payload, parse_close

#: Every code up to well past the last valid one, and a few beyond.
CODES = [*range(5100), 5999, 32768, 65535]


def wsproto_accepts(code: int) -> bool:
    protocol = FrameProtocol(client=False, extensions=[])
    try:
        protocol._process_close(WsprotoFrame(Opcode.CLOSE, code.to_bytes(2, "big"), True, True))
    except ParseFailed:
        return False
    return True


def websockets_accepts(code: int) -> bool:
    try:
        WebsocketsClose.parse(code.to_bytes(2, "big"))
    except ProtocolError:
        return False
    return True


def test_receivable_codes_are_wsprotos() -> None:
    receivable = {c for c in CODES if closes.is_receivable(c)}
    assert receivable == {c for c in CODES if wsproto_accepts(c)}
    # The one difference from the websockets library: it takes 1014 (Bad Gateway,
    # registered after Autobahn's case 7.9.x, which wants it refused, was written).
    assert {c for c in CODES if websockets_accepts(c)} == receivable | {1014}


def test_sendable_codes_are_the_receivable_ones_and_1014() -> None:
    sendable = {c for c in range(65536) if closes.is_sendable(c)}
    assert sendable == {c for c in range(65536) if closes.is_receivable(c)} | {1014}
    assert {closes.NO_STATUS, closes.ABNORMAL, 1004, 1015}.isdisjoint(sendable)
    assert {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 1014, 3000, 4999} <= sendable


NAMED = {
    name: value
    for name, value in vars(closes).items()
    if name.isupper() and isinstance(value, tuple) and not name.startswith("_")
}
FAILURES = [
    *(closes.reserved_opcode(op) for op in (3, 0xB, 0xF)),
    closes.invalid_close_code(65535),
    closes.too_big(2**63 - 1),
]


@pytest.mark.parametrize(
    "close", [*NAMED.values(), *FAILURES], ids=[*NAMED, "opcode", "0xB", "0xF", "code", "big"]
)
def test_every_close_fits_in_a_close_frame_and_reads_back(close: tuple[int, str]) -> None:
    code, reason = close
    assert closes.is_sendable(code)
    assert parse_close(close_payload(code, reason)) == (code, reason)
    assert wsproto_accepts(code)
    assert reason


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("SHUTTING_DOWN", 1001),
        ("BINARY_UNSUPPORTED", 1003),
        ("SLOW_CONSUMER", 1008),
        ("RATE_LIMIT_EXCEEDED", 1008),
        ("TOO_MANY_INVALID", 1008),
        ("INTERNAL", 1011),
        ("PING_TIMEOUT", 1011),
        ("BROKER_UNAVAILABLE", 1013),
        # RFC 6455 section 7.4.1: a protocol error, data not of the message's type.
        *((name, 1002) for name in ("RESERVED_BITS", "UNMASKED", "MASKED_FROM_SERVER")),
        *((name, 1002) for name in ("LONG_LENGTH", "FRAGMENTED_CONTROL", "LONG_CONTROL")),
        *((name, 1002) for name in ("NOTHING_TO_CONTINUE", "MESSAGE_IN_MESSAGE")),
        ("ONE_BYTE_CLOSE", 1002),
        ("INVALID_UTF8", 1007),
        ("INVALID_UTF8_REASON", 1007),
    ],
)
def test_the_code_of_each_close(name: str, code: int) -> None:
    assert NAMED[name][0] == code


def test_failures_with_a_value() -> None:
    assert closes.too_big(100) == (1009, "Exceeded maximum message size: 100 bytes")
    assert closes.reserved_opcode(0xB) == (1002, "reserved opcode 0xb")
    assert closes.invalid_close_code(1004) == (1002, "invalid close code 1004")
