"""How a connection frames what it sends (wsroute/_wire/framing.py): in its encoding,
compressed or not, and a shared message re-encoded and compressed once per way of
doing it rather than once per connection."""

from __future__ import annotations

import zlib

import msgpack
import pytest

from wsroute._msgpack import ENCODING as MSGPACK
from wsroute._protocol import error, event
from wsroute._wire.deflate import TAIL, Codec, Deflate
from wsroute._wire.deflate_negotiation import negotiate
from wsroute._wire.frames import OP_BINARY, OP_TEXT, Prepared, header, server_frame
from wsroute._wire.framing import Encoding, Framer, framer
from wsroute._wire.headers import parse_extensions

CHATTY = b'{"type":"item_created","data":{"id":42,"name":"a widget","price":1999}}' * 4


def codec(allowed: Deflate, offered: str = "permessage-deflate") -> Codec:
    extensions = [(e.name, e.params) for e in parse_extensions(offered.encode())]
    result = negotiate(extensions, allowed)
    assert result is not None
    return Codec(allowed, *result)


def inflate(wire: bytes, bits: int = 15) -> bytes:
    assert wire[0] & 0x40  # RSV1: compressed
    return zlib.decompressobj(-bits).decompress(wire[2:] + TAIL)


def test_plain_json_connections_frame_without_a_framer() -> None:
    assert framer(None, None) is server_frame


def test_a_broadcast_is_compressed_once_for_every_connection_sharing_settings() -> None:
    allowed = Deflate(threshold=0)
    framers = [framer(None, codec(allowed)) for _ in range(3)]
    prepared = Prepared(CHATTY)
    frames = [frame(prepared) for frame in framers]
    assert frames[0] is frames[1] is frames[2]
    assert frames[0][0] == 0xC1  # FIN, RSV1, text
    assert inflate(frames[0]) == CHATTY
    # Another window: compressed again, for its connections only.
    small = framer(None, codec(allowed, "permessage-deflate; server_max_window_bits=9"))
    other = small(prepared)
    assert other is not frames[0]
    assert inflate(other, 9) == CHATTY


def test_with_context_takeover_a_broadcast_is_compressed_per_connection() -> None:
    allowed = Deflate(threshold=0, server_context_takeover=True)
    first, second = framer(None, codec(allowed)), framer(None, codec(allowed))
    prepared = Prepared(CHATTY)
    assert first(prepared) is not second(prepared)
    assert prepared.cache is None


def test_msgpack_connections_share_one_encoding_of_a_message() -> None:
    prepared = event("item_created", "items", {"id": 42})
    first, second = framer(MSGPACK, None), framer(MSGPACK, None)
    wire = first(prepared)
    assert second(prepared) is wire
    assert wire[0] == 0x80 | OP_BINARY
    assert msgpack.unpackb(wire[2:]) == {
        "type": "item_created",
        "topic": "items",
        "data": {"id": 42},
    }
    # The JSON connections still get the JSON frame.
    assert server_frame(prepared) == header(OP_TEXT, len(prepared.payload)) + prepared.payload


def test_bytes_in_a_message_are_binary_in_msgpack_and_base64_in_json() -> None:
    prepared = event("blob", None, {"raw": b"\x00\xff"})
    assert b'"raw":"AP8="' in prepared.payload
    wire = framer(MSGPACK, None)(prepared)
    assert msgpack.unpackb(wire[2:]) == {"type": "blob", "data": {"raw": b"\x00\xff"}}


def test_msgpack_and_compression_are_cached_apart() -> None:
    """One message sent to four kinds of connection is made four ways, once each."""
    allowed = Deflate(threshold=0)
    kinds = [
        framer(None, None),
        framer(None, codec(allowed)),
        framer(MSGPACK, None),
        framer(MSGPACK, codec(allowed)),
    ]
    prepared = Prepared(b"[" + CHATTY.replace(b"}}{", b"}},{") + b"]")
    frames = [frame(prepared) for frame in kinds]
    assert len({id(f) for f in frames}) == 4
    again = [frame(prepared) for frame in kinds[1:]]
    assert all(a is b for a, b in zip(again, frames[1:], strict=True))
    packed = msgpack.packb(msgpack.unpackb(frames[2][4:]))  # 16-bit length
    assert inflate(frames[3]) == packed


@pytest.mark.parametrize("encoding", [None, MSGPACK])
def test_frames_the_app_sends_itself_go_as_they_are(encoding: Encoding | None) -> None:
    """``conn.send_frame`` bypasses the protocol: text stays text under msgpack."""
    frame = Framer(encoding, None)
    assert frame(b"\x01\x02") == header(OP_BINARY, 2) + b"\x01\x02"
    assert frame("hé") == header(OP_TEXT, 3) + "hé".encode()


def test_error_replies_are_text_in_json_and_binary_in_msgpack() -> None:
    reply = error(None, None, "invalid_json", "frame is not valid JSON")
    assert Framer(None, None)(reply) == reply.wire
    wire = Framer(MSGPACK, None)(reply)
    assert wire[0] == 0x80 | OP_BINARY
    assert msgpack.unpackb(wire[2:])["error"] == {
        "code": "invalid_json",
        "message": "frame is not valid JSON",
    }


def test_msgpack_writes_keys_and_nan_as_json_does() -> None:
    """A message kept for its bytes may hold int keys (a ``dict[int, X]`` result):
    msgpack clients get the string keys JSON clients get."""
    data = {"raw": b"\x01", "by_id": {1: "a", 2: {3: [b""]}}, "nan": float("nan")}
    prepared = event("scores", None, data)
    assert b'"by_id":{"1":"a","2":{"3":[""]}},"nan":null' in prepared.payload
    wire = framer(MSGPACK, None)(prepared)
    assert msgpack.unpackb(wire[2:]) == {
        "type": "scores",
        "data": {"raw": b"\x01", "by_id": {"1": "a", "2": {"3": [b""]}}, "nan": None},
    }
