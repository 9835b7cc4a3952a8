"""Frame headers, masking, close payloads (wsroute/_wire/frames.py).

Exact bytes from RFC 6455's own examples (section 5.7) and at every length
boundary; what ``encode`` writes is read back by the ``websockets`` library's frame
parser (the close codes themselves: tests/test_wire_closes.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsroute._wire.frames import (
    MAX_CLOSE_REASON,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    Prepared,
    ProtocolViolation,
    close_payload,
    encode,
    header,
    is_receivable_code,
    mask,
    parse_close,
    server_frame,
)

from .wirepeers import parse_frames

#: The masking key of RFC 6455 section 5.7's examples.
RFC_KEY = b"\x37\xfa\x21\x3d"


# -- headers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        pytest.param(0, b"\x82\x00", id="0"),
        pytest.param(125, b"\x82\x7d", id="125"),
        pytest.param(126, b"\x82\x7e\x00\x7e", id="126"),
        pytest.param(65535, b"\x82\x7e\xff\xff", id="65535"),
        pytest.param(65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", id="65536"),
        pytest.param(2**32, b"\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00", id="2^32"),
        pytest.param(2**63 - 1, b"\x82\x7f\x7f" + b"\xff" * 7, id="2^63-1"),
    ],
)
def test_header_uses_the_shortest_length_form(length: int, expected: bytes) -> None:
    assert header(OP_BINARY, length) == expected
    masked = header(OP_BINARY, length, masked=True)
    assert masked == expected[:1] + bytes([expected[1] | 0x80]) + expected[2:]


@pytest.mark.parametrize(
    ("options", "first"),
    [
        pytest.param({}, 0x81, id="fin"),
        pytest.param({"fin": False}, 0x01, id="not fin"),
        pytest.param({"rsv": RSV1}, 0xC1, id="RSV1"),
        pytest.param({"fin": False, "rsv": RSV1}, 0x41, id="RSV1 not fin"),
    ],
)
def test_header_first_byte(options: dict[str, int], first: int) -> None:
    assert header(OP_TEXT, 5, **options) == bytes([first, 5])  # type: ignore[arg-type]


# -- masking -----------------------------------------------------------------------

keys = st.binary(min_size=4, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), keys)
def test_mask_is_a_byte_by_byte_xor_and_its_own_inverse(payload: bytes, key: bytes) -> None:
    masked = mask(payload, key)
    assert masked == bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    assert mask(masked, key) == payload
    # The types a reader hands it: slices of a bytearray, memoryviews.
    assert mask(bytearray(payload), bytearray(key)) == masked
    assert mask(memoryview(payload), key) == masked


def test_mask_of_nothing_is_nothing() -> None:
    assert mask(b"", RFC_KEY) == b""


# -- encode: RFC 6455 section 5.7 ---------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        pytest.param(encode(OP_TEXT, b"Hello"), b"\x81\x05Hello", id="unmasked text"),
        pytest.param(
            encode(OP_TEXT, b"Hello", key=RFC_KEY),
            b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
            id="masked text",
        ),
        pytest.param(encode(OP_TEXT, b"Hel", fin=False), b"\x01\x03Hel", id="first fragment"),
        pytest.param(encode(OP_CONTINUATION, b"lo"), b"\x80\x02lo", id="last fragment"),
        pytest.param(encode(OP_PING, b"Hello"), b"\x89\x05Hello", id="unmasked ping"),
        pytest.param(
            encode(OP_PONG, b"Hello", key=RFC_KEY),
            b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
            id="masked pong",
        ),
        pytest.param(
            encode(OP_BINARY, bytes(256)), b"\x82\x7e\x01\x00" + bytes(256), id="256 bytes"
        ),
        pytest.param(
            encode(OP_BINARY, bytes(65536)),
            b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + bytes(65536),
            id="64 KiB",
        ),
        pytest.param(encode(OP_CLOSE), b"\x88\x00", id="empty close"),
        pytest.param(encode(OP_CLOSE, key=RFC_KEY), b"\x88\x80" + RFC_KEY, id="masked empty"),
    ],
)
def test_encode_writes_rfc_6455s_examples(frame: bytes, expected: bytes) -> None:
    assert frame == expected


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([OP_TEXT, OP_BINARY, OP_CONTINUATION]),
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from([125, 126, 65535, 65536]).map(lambda n: b"\xa5" * n),
    ),
    st.booleans(),
    st.one_of(st.none(), keys),
)
def test_websockets_reads_back_what_encode_writes(
    opcode: int, payload: bytes, fin: bool, key: bytes | None
) -> None:
    [frame] = parse_frames(encode(opcode, payload, fin=fin, key=key), masked=key is not None)
    assert (frame.opcode, frame.data, frame.fin) == (opcode, payload, fin)


# -- close payloads ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "payload"),
    [
        pytest.param(1005, "", b"", id="1005: no code, empty"),
        pytest.param(1000, "", b"\x03\xe8", id="1000"),
        pytest.param(1001, "bye", b"\x03\xe9bye", id="1001 bye"),
        pytest.param(1014, "", b"\x03\xf6", id="1014 may be sent"),
        pytest.param(3000, "", b"\x0b\xb8", id="3000"),
        pytest.param(4999, "é" * 61, b"\x13\x87" + "é".encode() * 61, id="122 bytes of reason"),
        pytest.param(1000, "x" * MAX_CLOSE_REASON, b"\x03\xe8" + b"x" * 123, id="123 bytes"),
    ],
)
def test_close_payload(code: int, reason: str, payload: bytes) -> None:
    assert close_payload(code, reason) == payload


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param(1000, "x" * (MAX_CLOSE_REASON + 1), id="124 bytes of reason"),
        pytest.param(1000, "é" * 62, id="124 bytes of UTF-8"),
        pytest.param(1005, "why", id="a reason without a code"),
        *(
            pytest.param(code, "", id=f"code {code}")
            for code in (0, 999, 1004, 1006, 1015, 1016, 2999, 5000, 65535)
        ),
    ],
)
def test_close_payload_refuses(code: int, reason: str) -> None:
    with pytest.raises(ValueError):
        close_payload(code, reason)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"", (1005, ""), id="empty: 1005"),
        pytest.param(b"\x03\xe8", (1000, ""), id="1000"),
        pytest.param(b"\x03\xe9bye", (1001, "bye"), id="1001 bye"),
        pytest.param(b"\x0b\xb8", (3000, ""), id="3000"),
        pytest.param(b"\x13\x87" + "é".encode() * 61, (4999, "é" * 61), id="4999, longest"),
    ],
)
def test_parse_close(payload: bytes, expected: tuple[int, str]) -> None:
    assert parse_close(payload) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(b"\x03", 1002, id="one byte"),
        *(
            pytest.param(code.to_bytes(2, "big"), 1002, id=f"code {code}")
            for code in (0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000, 65535)
        ),
        pytest.param(b"\x03\xe8\xff", 1007, id="reason not UTF-8"),
        pytest.param(b"\x03\xe8\xed\xa0\x80", 1007, id="encoded surrogate"),
        pytest.param(b"\x03\xe8\xce", 1007, id="truncated reason"),
        pytest.param(b"\x03\xe4\xff", 1002, id="bad code before bad reason"),
    ],
)
def test_parse_close_refuses(payload: bytes, code: int) -> None:
    with pytest.raises(ProtocolViolation) as caught:
        parse_close(payload)
    assert caught.value.code == code
    assert caught.value.args == (code, caught.value.reason)
    assert caught.value.reason


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.sampled_from([c for c in range(1000, 3000) if is_receivable_code(c)]),
        st.integers(3000, 4999),
    ),
    st.text(max_size=30),  # at most 120 bytes of UTF-8
)
def test_parse_close_reads_what_close_payload_writes(code: int, reason: str) -> None:
    assert parse_close(close_payload(code, reason)) == (code, reason)


# -- frames a server sends ---------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "head"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70_000, 10)]
)
def test_prepared_and_server_frames_use_the_shortest_length(size: int, head: int) -> None:
    text = "a" * size
    prepared = Prepared(text.encode())
    assert len(prepared.wire) == head + size
    assert server_frame(prepared) is prepared.wire
    assert server_frame(text) == prepared.wire
    binary = server_frame(text.encode())
    assert binary == bytes([0x82]) + prepared.wire[1:]
    frames = parse_frames(prepared.wire + binary, masked=False)
    assert [(f.opcode, f.data, f.fin) for f in frames] == [
        (OP_TEXT, text.encode(), True),
        (OP_BINARY, text.encode(), True),
    ]


def test_server_frame_writes_text_as_utf_8() -> None:
    assert server_frame("é€😀") == b"\x81\x09" + "é€😀".encode()
    assert server_frame(b"\xff") == b"\x82\x01\xff"
