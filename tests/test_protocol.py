"""Wire protocol v1 codec (``wsroute._protocol``): fed strings, no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsroute import ProtocolError
from wsroute._protocol import (
    INVALID_JSON,
    INVALID_MESSAGE,
    MSGPACK_EVENT,
    ClientMessage,
    decode,
    encode_event,
    error,
    received_event,
    reply,
)
from wsroute._protocol import protocol_error as error_reply_for


def protocol_error(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    return info.value


# -- decode: valid frames ------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type": "ping"}', ClientMessage("ping", None, None)),
        ('{"type": "ping", "data": null}', ClientMessage("ping", None, None)),
        ('{"type": "add", "id": 7, "data": {"a": [1, 2]}}', ClientMessage("add", 7, {"a": [1, 2]})),
        ('{"id": "req-1", "type": "add", "data": "x"}', ClientMessage("add", "req-1", "x")),
        (b'{"type": "caf\xc3\xa9", "data": 1.5}', ClientMessage("café", None, 1.5)),
        ('{"type": "t", "id": 9007199254740992}', ClientMessage("t", 2**53, None)),
        ('{"type": "t", "id": -9007199254740992}', ClientMessage("t", -(2**53), None)),
        ('{"type": "t", "id": 0}', ClientMessage("t", 0, None)),
        ('{"type": "t", "id": ""}', ClientMessage("t", "", None)),
    ],
)
def test_decode_valid_frames(frame: str | bytes, expected: ClientMessage) -> None:
    assert decode(frame) == expected


def test_decode_accepts_type_of_128_chars_and_id_of_64_chars() -> None:
    frame = json.dumps({"type": "t" * 128, "id": "i" * 64})
    assert decode(frame) == ClientMessage("t" * 128, "i" * 64, None)


def test_twenty_digit_string_is_not_mistaken_for_a_wide_integer() -> None:
    frame = (
        '{"type": "call", "id": "12345678901234567890",'
        ' "data": {"phone": "123456789012345678901234"}}'
    )
    assert decode(frame) == ClientMessage(
        "call", "12345678901234567890", {"phone": "123456789012345678901234"}
    )


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63), -(2**63) + 1])
def test_64_bit_boundary_integers_decode_as_exact_ints(value: int) -> None:
    message = decode(f'{{"type": "t", "data": [{value}]}}')
    assert message.data == [value]
    assert type(message.data[0]) is int


def test_twenty_digit_string_decodes_at_any_depth_orjson_accepts() -> None:
    # orjson accepts 1024 levels of nesting; a 20-digit string at depth 1020 is valid.
    depth = 1020
    frame = '{"type": "t", "data": ' + "[" * depth + '"12345678901234567890"' + "]" * depth + "}"
    data: Any = decode(frame).data
    for _ in range(depth):
        data = data[0]
    assert data == "12345678901234567890"


# -- decode: invalid JSON ------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "   ",
        "{",
        "{'type': 'x'}",
        '{"type": "x",}',
        "NaN",
        "Infinity",
        "-Infinity",
        '{"type": "t", "data": NaN}',
        '{"type": "t", "data": Infinity}',
        '{"type": "t", "data": -Infinity}',
        "1e400",
        '{"type": "t", "data": 1e400}',
        '{"type": "t", "data": -1e400}',
        '"\\ud800"',
        '{"type": "\\ud800"}',
        '{"type": "t", "data": "\\udc00x"}',
        "[" * 2000 + "]" * 2000,
        '{"type": "t", "data": ' + "[" * 2000 + "]" * 2000 + "}",
        b"",
        b"\xff\xfe",
        b'{"type": "\xff"}',
        b'{"type": "t", "data": "\xc3"}',
    ],
)
def test_decode_rejects_invalid_json(frame: str | bytes) -> None:
    exc = protocol_error(frame)
    assert exc.code == INVALID_JSON
    assert (exc.type, exc.id) == (None, None)


@pytest.mark.parametrize(
    "literal",
    [
        str(2**64),
        str(-(2**63) - 1),
        str(-(2**64)),
        "1" * 30,
        "-" + "9" * 30,
    ],
    ids=["2**64", "-(2**63)-1", "-(2**64)", "30-digits", "negative-30-digits"],
)
@pytest.mark.parametrize(
    "template",
    ["{}", '{{"type": "t", "data": {}}}', '{{"type": "t", "data": {{"a": [1, {}]}}}}'],
    ids=["top-level", "data", "nested-in-data"],
)
def test_integers_beyond_64_bits_are_invalid_json(template: str, literal: str) -> None:
    exc = protocol_error(template.format(literal))
    assert exc.code == INVALID_JSON


# -- decode: valid JSON, invalid envelope --------------------------------------------


@pytest.mark.parametrize("frame", ["[]", '["type"]', '"ping"', "1", "null", "true", "1.5"])
def test_non_object_frame_is_invalid_message(frame: str) -> None:
    exc = protocol_error(frame)
    assert (exc.code, exc.type, exc.id) == (INVALID_MESSAGE, None, None)


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"data": 1},
        {"id": 1},
        {"type": None},
        {"type": ""},
        {"type": "t" * 129},
        {"type": 1},
        {"type": ["x"]},
        {"type": True},
    ],
)
def test_missing_or_bad_type_is_invalid_message(frame: dict[str, Any]) -> None:
    exc = protocol_error(json.dumps(frame))
    assert (exc.code, exc.type, exc.id) == (INVALID_MESSAGE, None, None)


@pytest.mark.parametrize(
    "bad_id",
    [2**53 + 1, -(2**53) - 1, True, False, 1.0, 1.5, "i" * 65, [], {}],
)
def test_bad_id_is_invalid_message(bad_id: Any) -> None:
    exc = protocol_error(json.dumps({"type": "t", "id": bad_id}))
    assert (exc.code, exc.type, exc.id) == (INVALID_MESSAGE, None, None)
    assert "id" in exc.message


@pytest.mark.parametrize(
    ("frame", "echo"),
    [
        ({"type": "t", "id": 3, "extra": 1}, ("t", 3)),
        ({"type": "t", "id": "a", "Data": 1}, ("t", "a")),
        ({"type": "t", "topic": "x"}, ("t", None)),
        ({"type": "t", "id": 1, "data": 2, "ok": True}, ("t", 1)),
    ],
)
def test_unexpected_key_is_invalid_message_echoing_type_and_id(
    frame: dict[str, Any], echo: tuple[str, Any]
) -> None:
    exc = protocol_error(json.dumps(frame))
    assert exc.code == INVALID_MESSAGE
    assert (exc.type, exc.id) == echo
    extra = sorted(set(frame) - {"type", "id", "data"})
    assert all(repr(key) in exc.message for key in extra)


# -- encoders -------------------------------------------------------------------------


def parsed(frame: str | bytes) -> dict[str, Any]:
    value = json.loads(frame)
    assert isinstance(value, dict)
    return value


def test_reply_with_id() -> None:
    frame = reply("add", 7, {"sum": 3})
    assert frame.value is None  # its JSON says it all
    assert parsed(frame.payload) == {"type": "add", "id": 7, "ok": True, "data": {"sum": 3}}


def test_reply_omits_a_missing_id_but_keeps_null_data() -> None:
    message = parsed(reply("ping", None, None).payload)
    assert message == {"type": "ping", "ok": True, "data": None}
    assert set(message) == {"type", "ok", "data"}


def test_reply_keeps_a_string_id_and_non_string_keys() -> None:
    message = parsed(reply("t", "req-1", {1: "one"}).payload)
    assert message == {"type": "t", "id": "req-1", "ok": True, "data": {"1": "one"}}


def test_reply_rejects_unserialisable_data() -> None:
    with pytest.raises(TypeError):
        reply("t", 1, object())


def test_bytes_are_base64_in_json_and_kept_for_msgpack() -> None:
    frame = reply("blob", 1, {"raw": b"\x00\xff", "n": 1})
    assert parsed(frame.payload)["data"] == {"raw": "AP8=", "n": 1}
    assert frame.value == {
        "type": "blob",
        "id": 1,
        "ok": True,
        "data": {"raw": b"\x00\xff", "n": 1},
    }


def test_an_event_with_bytes_crosses_the_broker_in_msgpack() -> None:
    plain = encode_event("tick", "all", {"n": 1})
    assert parsed(plain) == {"type": "tick", "topic": "all", "data": {"n": 1}}
    assert received_event(plain).payload == plain
    binary = encode_event("tick", "all", {"raw": b"\x01"})
    assert binary[0] == MSGPACK_EVENT
    frame = received_event(binary)
    assert parsed(frame.payload) == {"type": "tick", "topic": "all", "data": {"raw": "AQ=="}}
    assert frame.value == {"type": "tick", "topic": "all", "data": {"raw": b"\x01"}}


def test_a_broken_msgpack_event_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        received_event(bytes([MSGPACK_EVENT]) + b"\xc1")


def test_error_full() -> None:
    frame = error("add", 7, "not_found", "no such item", {"item": 3})
    assert parsed(frame.payload) == {
        "type": "add",
        "id": 7,
        "ok": False,
        "error": {"code": "not_found", "message": "no such item", "details": {"item": 3}},
    }


def test_error_without_type_id_or_details() -> None:
    reply = parsed(error(None, None, INVALID_JSON, "bad").payload)
    assert reply == {
        "type": "error",
        "ok": False,
        "error": {"code": INVALID_JSON, "message": "bad"},
    }
    assert set(reply) == {"type", "ok", "error"}
    assert set(reply["error"]) == {"code", "message"}


def test_error_drops_unserialisable_details_but_still_encodes() -> None:
    reply = parsed(error("t", 1, "boom", "it broke", {"obj": object()}).payload)
    assert reply == {
        "type": "t",
        "id": 1,
        "ok": False,
        "error": {"code": "boom", "message": "it broke"},
    }


def test_error_keeps_falsy_details() -> None:
    reply = parsed(error("t", None, "c", "m", []).payload)
    assert reply["error"] == {"code": "c", "message": "m", "details": []}


def test_encode_event_is_compact_utf8_bytes() -> None:
    frame = encode_event("tick", "t", {"n": 1})
    assert frame == b'{"type":"tick","topic":"t","data":{"n":1}}'


def test_encode_event_without_topic() -> None:
    event = parsed(encode_event("news", None, ["é"]))
    assert event == {"type": "news", "data": ["é"]}
    assert set(event) == {"type", "data"}


def test_protocol_error_echoes_what_was_readable() -> None:
    exc = protocol_error('{"type": "t", "id": 5, "extra": 0}')
    assert parsed(error_reply_for(exc).payload) == {
        "type": "t",
        "id": 5,
        "ok": False,
        "error": {"code": INVALID_MESSAGE, "message": exc.message},
    }


def test_protocol_error_for_unreadable_frame() -> None:
    exc = protocol_error("{nope")
    assert parsed(error_reply_for(exc).payload) == {
        "type": "error",
        "ok": False,
        "error": {"code": INVALID_JSON, "message": exc.message},
    }


def test_protocol_error_includes_details() -> None:
    exc = ProtocolError("invalid_message", "m", type="t", id=1, details={"k": "v"})
    assert parsed(error_reply_for(exc).payload)["error"] == {
        "code": "invalid_message",
        "message": "m",
        "details": {"k": "v"},
    }


# -- properties ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=8,
)
int64ish = st.integers(min_value=-(2**63), max_value=2**64 - 1)
exact_json_values = st.recursive(
    st.none()
    | st.booleans()
    | int64ish
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=8,
)
SETTINGS = settings(max_examples=200, deadline=None)


def decodes_or_protocol_error(frame: str | bytes) -> None:
    try:
        message = decode(frame)
    except ProtocolError as exc:
        assert exc.code in {INVALID_JSON, INVALID_MESSAGE}
    else:
        assert isinstance(message, ClientMessage)
        assert isinstance(message.type, str)


@SETTINGS
@given(st.text())
def test_decode_arbitrary_text_never_raises_anything_else(text: str) -> None:
    decodes_or_protocol_error(text)


@SETTINGS
@given(st.binary())
def test_decode_arbitrary_bytes_never_raises_anything_else(data: bytes) -> None:
    decodes_or_protocol_error(data)


@SETTINGS
@given(json_values)
def test_decode_arbitrary_json_never_raises_anything_else(value: Any) -> None:
    decodes_or_protocol_error(json.dumps(value))
    decodes_or_protocol_error(json.dumps({"type": "t", "id": 1, "data": value}))


@settings(max_examples=100, deadline=None)
@given(exact_json_values)
def test_data_within_64_bits_round_trips(value: Any) -> None:
    assert decode(json.dumps({"type": "t", "data": value})) == ClientMessage("t", None, value)
