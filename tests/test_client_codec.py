"""The client's message codec (``wsroute.client._codec``): JSON and msgpack frames,
fed and read without sockets. Against a server: tests/test_client.py."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import msgpack
import orjson
import pytest

from wsroute._msgpack import decode as server_decode
from wsroute.client._codec import Unreadable, decode, encode, message, replay_key


def test_messages_carry_only_what_they_have() -> None:
    assert message("ping", None, None) == {"type": "ping"}
    assert message("get", 7, {"id": 1}) == {"type": "get", "id": 7, "data": {"id": 1}}


def test_json_is_text_with_bytes_as_base64() -> None:
    frame = encode(message("put", 1, {"blob": b"\x00\xff", 2: "two"}), binary=False)
    assert isinstance(frame, str)
    assert orjson.loads(frame) == {"type": "put", "id": 1, "data": {"blob": "AP8=", "2": "two"}}


def test_msgpack_is_binary_with_bytes_as_binary_and_what_json_cannot_say_as_json_says_it() -> None:
    when = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)
    data: dict[Any, Any] = {
        "blob": bytearray(b"\x00"),
        1: float("inf"),
        "nested": ({"when": when, "id": uuid.UUID(int=1), "raw": memoryview(b"\x01")},),
    }
    frame = encode(message("put", 1, data), binary=True)
    assert isinstance(frame, bytes)
    assert msgpack.unpackb(frame, raw=False) == {
        "type": "put",
        "id": 1,
        "data": {
            "blob": b"\x00",
            "1": None,
            "nested": [
                {
                    "when": "2024-05-01T12:00:00+00:00",
                    "id": "00000000-0000-0000-0000-000000000001",
                    "raw": b"\x01",
                }
            ],
        },
    }
    # The server takes it as it is.
    assert server_decode(frame).data["blob"] == b"\x00"


@pytest.mark.parametrize("binary", [False, True])
def test_what_neither_format_can_write_is_a_type_error(binary: bool) -> None:
    for data in (2**64, {"x": object()}):
        with pytest.raises(TypeError):
            encode(message("put", 1, data), binary)


def test_frames_are_read_in_the_connections_format() -> None:
    assert decode('{"type": "a"}', binary=False) == {"type": "a"}
    assert decode(msgpack.packb({"type": "a", "data": b"\x00"}), binary=True) == {
        "type": "a",
        "data": b"\x00",
    }


@pytest.mark.parametrize(
    ("frame", "binary", "why"),
    [
        (b"\x81", False, "dropped a binary frame of 1 bytes"),
        ("{", False, "dropped a frame that is not JSON: '{'"),
        ("{}", True, "dropped a text frame of 2 characters"),
        (b"\xc1", True, "dropped a frame that is not msgpack (FormatError): b'\\xc1'"),
        (b"\x00\x00", True, "dropped a frame that is not msgpack (unpack(b) received extra"),
        (b"\xa1\xff", True, "dropped a frame that is not msgpack ('utf-8' codec can't decode"),
    ],
)
def test_unreadable_frames_say_why(frame: str | bytes, binary: bool, why: str) -> None:
    with pytest.raises(Unreadable) as info:
        decode(frame, binary)
    assert str(info.value).startswith(why)


def test_replay_keys_ignore_key_order_and_tell_bytes_from_their_base64() -> None:
    assert replay_key("a", {"x": 1, "y": 2}) == replay_key("a", {"y": 2, "x": 1})
    assert replay_key("a", {1: b"\x00"}) == replay_key("a", {1: b"\x00"})
    assert replay_key("a", b"\x00\xff") != replay_key("a", "AP8=")
    assert replay_key("a", b"\x00") != replay_key("b", b"\x00")
