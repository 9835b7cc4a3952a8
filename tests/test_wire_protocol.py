"""One WebSocket connection's state machine, sans-IO (wsroute/_wire/protocol.py,
events.py, sender.py).

Tables: every way a peer can break RFC 6455 and what the connection then does (the
exact events, one close frame with the code, CLOSED, nothing more read); the
control frames, the closing handshake both ways, end of stream, sending states,
the client role. Properties: the same reads fed to wsproto's and the ``websockets``
library's sans-IO parsers give the same messages, pings, pongs, close or kind of
failure, and the same frames sent back (tests/wirepeers.py); any split of a stream
into reads gives the same events as one read; a client's frames read back by a
server and the reverse.
"""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.protocol import Protocol as WebsocketsProtocol
from websockets.protocol import Side
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from wsroute._wire.deflate import Codec, Deflate, Settings
from wsroute._wire.events import Close, Event, Failure, Ping, Pong, State
from wsroute._wire.frames import OP_CLOSE, OP_PONG, encode
from wsroute._wire.protocol import Protocol
from wsroute._wire.sender import StateError

from .rawws import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, frame
from .wirepeers import (
    Reading,
    chunked,
    parse_frames,
    websockets_reads,
    wsproto_reads,
    wsroute_reads,
)

BIG = 2**20
KEY = b"\x5c\x13\xa7\x08"


def raw(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    width: int | None = None,
    length: int | None = None,
) -> bytes:
    """One frame exactly as given, unlike a well-behaved peer's: its length written in
    ``width`` bits (7, 16 or 64; the shortest form by default), announcing ``length``
    (the payload's by default) whatever the payload that follows. ``rsv`` is the three
    RSV bits (RSV1 = 0b100)."""
    size = len(payload) if length is None else length
    if width is None:
        width = 7 if size < 126 else 16 if size < 65536 else 64
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if width == 7:
        head = struct.pack("!BB", first, mask_bit | size)
    elif width == 16:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return head + payload
    stream = (KEY * (len(payload) // 4 + 1))[: len(payload)]
    body = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return head + KEY + body.to_bytes(len(payload), "big")


DEFLATE = Deflate(threshold=0)
#: What a server and a client agree on for ``DEFLATE`` without any parameter.
AGREED = Settings(False, False, 15, 15)


def codec(*, client: bool = False) -> Codec:
    return Codec(DEFLATE, AGREED, "permessage-deflate", client=client)


def deflated(data: bytes) -> bytes:
    """``data`` compressed as a peer does for permessage-deflate (RFC 7692 section
    7.2.1): a raw deflate stream, flushed, its trailing empty block cut."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def protocol(
    *, client: bool = False, max_message_size: int = BIG, deflate: bool = False
) -> Protocol:
    return Protocol(
        client=client,
        max_message_size=max_message_size,
        codec=codec(client=client) if deflate else None,
    )


def feed(ws: Protocol, data: bytes, *, by_byte: bool = False) -> list[Event]:
    events: list[Event] = []
    for chunk in [data[i : i + 1] for i in range(len(data))] if by_byte else [data]:
        events += ws.receive_data(chunk)
    return events


def sent(ws: Protocol, *, client: bool = False) -> list[tuple[int, bytes]]:
    """The frames ``ws`` owes the peer, (opcode, payload), checked for their masking."""
    return [(int(f.opcode), f.data) for f in parse_frames(ws.data_to_send(), masked=client)]


def close(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


BY_BYTE = pytest.mark.parametrize("by_byte", [False, True], ids=["whole", "byte by byte"])
KOSME = "κόσμε".encode()  # Autobahn's favourite multi-byte text


# -- failures ----------------------------------------------------------------------


class Broken(NamedTuple):
    """A frame (or frames) that fail the connection, right after a valid message."""

    data: bytes
    code: int
    reason: str  # a regular expression the Failure's reason matches
    delivered: tuple[Event, ...] = ()  # what ``data`` gives before it fails
    client: bool = False
    limit: int = BIG
    deflate: bool = False  # permessage-deflate was negotiated


def _failures() -> list[Any]:
    cases: dict[str, Broken] = {}
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        cases[f"reserved opcode {op:#x}"] = Broken(raw(op, b"x"), 1002, "reserved opcode")
    for bits, name in ((0b100, "RSV1"), (0b010, "RSV2"), (0b001, "RSV3")):
        cases[f"{name} on text"] = Broken(raw(TEXT, b"x", rsv=bits), 1002, "reserved bits")
    cases["RSV1 on a ping"] = Broken(raw(PING, b"x", rsv=0b100), 1002, "reserved bits")
    cases["RSV2 when deflate is negotiated"] = Broken(
        raw(BINARY, b"x", rsv=0b010), 1002, "reserved bits", deflate=True
    )
    cases["RSV1 on a ping when deflate is negotiated"] = Broken(
        raw(PING, b"x", rsv=0b100), 1002, "reserved bits", deflate=True
    )
    cases["RSV1 on a continuation (RFC 7692 section 6.1)"] = Broken(
        raw(TEXT, deflated(b"ab"), fin=False, rsv=0b100) + raw(CONTINUATION, b"", rsv=0b100),
        1002,
        "reserved bits",
        deflate=True,
    )
    cases["not deflate data"] = Broken(
        raw(TEXT, b"\xff\xff\xff\xff", rsv=0b100), 1007, "invalid compressed data", deflate=True
    )
    cases["data after a final deflate block"] = Broken(
        raw(BINARY, zlib.compress(b"ab", wbits=-15) + b"junk", rsv=0b100),
        1007,
        "invalid compressed data",
        deflate=True,
    )
    cases["compressed invalid UTF-8"] = Broken(
        raw(TEXT, deflated(b"\xce\xba\xff"), rsv=0b100), 1007, "invalid UTF-8", deflate=True
    )
    cases["compressed invalid UTF-8 across fragments"] = Broken(
        raw(TEXT, deflated(b"\xcex")[:1], fin=False, rsv=0b100)
        + raw(CONTINUATION, deflated(b"\xcex")[1:]),
        1007,
        "invalid UTF-8",
        deflate=True,
    )
    cases["a small frame that inflates past the limit"] = Broken(
        raw(BINARY, deflated(bytes(10_000)), rsv=0b100),
        1009,
        "maximum message size",
        limit=9_999,
        deflate=True,
    )
    cases["fragments that inflate past the limit together"] = Broken(
        raw(BINARY, deflated(bytes(10_000))[:10], fin=False, rsv=0b100)
        + raw(CONTINUATION, deflated(bytes(10_000))[10:]),
        1009,
        "maximum message size",
        limit=9_999,
        deflate=True,
    )
    cases["unmasked text to a server"] = Broken(raw(TEXT, b"x", masked=False), 1002, "unmasked")
    cases["unmasked close to a server"] = Broken(
        raw(CLOSE, close(1000), masked=False), 1002, "unmasked"
    )
    cases["masked text to a client"] = Broken(
        raw(TEXT, b"x"), 1002, "masked frame from the server", client=True
    )
    short = "a length not in its shortest form"
    cases["16-bit length for 5 bytes"] = Broken(raw(TEXT, b"hello", width=16), 1002, short)
    cases["16-bit length for 125 bytes"] = Broken(raw(BINARY, bytes(125), width=16), 1002, short)
    cases["16-bit length for a ping"] = Broken(raw(PING, b"p", width=16), 1002, short)
    cases["64-bit length for 0 bytes"] = Broken(raw(BINARY, width=64), 1002, short)
    cases["64-bit length for 200 bytes"] = Broken(raw(BINARY, bytes(200), width=64), 1002, short)
    cases["64-bit length for 65535 bytes"] = Broken(
        raw(BINARY, bytes(65535), width=64), 1002, short
    )
    cases["64-bit length, top bit set"] = Broken(raw(BINARY, length=2**63, width=64), 1002, short)
    cases["64-bit length 2^64-1"] = Broken(raw(BINARY, length=2**64 - 1, width=64), 1002, short)
    cases["fragmented ping"] = Broken(raw(PING, b"p", fin=False), 1002, "fragmented control")
    cases["fragmented pong"] = Broken(raw(PONG, b"p", fin=False), 1002, "fragmented control")
    cases["fragmented close"] = Broken(
        raw(CLOSE, close(1000), fin=False), 1002, "fragmented control"
    )
    cases["ping of 126 bytes"] = Broken(raw(PING, bytes(126)), 1002, "over 125")
    cases["pong of 126 bytes"] = Broken(raw(PONG, bytes(126)), 1002, "over 125")
    cases["close of 126 bytes"] = Broken(raw(CLOSE, close(1000, bytes(124))), 1002, "over 125")
    nothing = "a continuation with nothing to continue"
    cases["continuation first"] = Broken(raw(CONTINUATION, b"x"), 1002, nothing)
    cases["unfinished continuation first"] = Broken(
        raw(CONTINUATION, b"x", fin=False), 1002, nothing
    )
    cases["continuation after a whole message"] = Broken(
        raw(TEXT, b"a", fin=False) + raw(CONTINUATION, b"b") + raw(CONTINUATION, b"c"),
        1002,
        nothing,
        ("ab",),
    )
    inside = "a new message inside a fragmented one"
    for first, then in ((TEXT, TEXT), (TEXT, BINARY), (BINARY, TEXT), (BINARY, BINARY)):
        cases[f"{first} then {then} inside it"] = Broken(
            raw(first, b"a", fin=False) + raw(then, b"b"), 1002, inside
        )
    utf8 = "invalid UTF-8"
    for name, data in (
        ("0xff", b"\xff"),
        ("overlong /", b"\xc0\xaf"),
        ("encoded surrogate", b"\xed\xa0\x80"),
        ("over U+10FFFF", b"\xf4\x90\x80\x80"),
        ("cut at the end", KOSME[:-1]),
        ("surrogate in text", KOSME + b"\xed\xa0\x80edited"),
        ("200 bytes, last bad", b"a" * 199 + b"\xff"),
    ):
        cases[f"invalid UTF-8: {name}"] = Broken(raw(TEXT, data), 1007, utf8)
    cases["invalid UTF-8 to a client"] = Broken(
        raw(TEXT, b"\xff", masked=False), 1007, utf8, client=True
    )
    # As soon as the fragment is read: no final fragment follows.
    cases["invalid first fragment"] = Broken(raw(TEXT, b"\xff", fin=False), 1007, utf8)
    cases["invalid second fragment"] = Broken(
        raw(TEXT, KOSME, fin=False) + raw(CONTINUATION, b"\xf4\x90\x80\x80", fin=False),
        1007,
        utf8,
    )
    cases["sequence broken across fragments"] = Broken(
        raw(TEXT, b"ok\xce", fin=False) + raw(CONTINUATION, b"\xce", fin=False), 1007, utf8
    )
    cases["sequence cut by the last fragment"] = Broken(
        raw(TEXT, b"ok\xce", fin=False) + raw(CONTINUATION, b""), 1007, utf8
    )
    too_big = "Exceeded maximum message size: 100 bytes"
    # From the header alone: no mask key, no payload follows.
    for name, head in (
        ("text of 101 bytes announced", raw(TEXT, length=101)[:2]),
        ("binary of 101 bytes announced", raw(BINARY, length=101)[:2]),
        ("200 bytes announced, 16-bit", raw(BINARY, length=200)[:4]),
        ("2^62 bytes announced", raw(BINARY, length=2**62, width=64)[:10]),
    ):
        cases[name] = Broken(head, 1009, too_big, limit=100)
    cases["continuation crossing the limit"] = Broken(
        raw(TEXT, b"x" * 60, fin=False) + raw(CONTINUATION, length=41)[:2],
        1009,
        too_big,
        limit=100,
    )
    cases["third fragment crossing the limit"] = Broken(
        raw(TEXT, b"x" * 60, fin=False)
        + raw(CONTINUATION, b"x" * 30, fin=False)
        + raw(CONTINUATION, length=11)[:2],
        1009,
        too_big,
        limit=100,
    )
    cases["limit reached, one byte more"] = Broken(
        raw(BINARY, bytes(100), fin=False)
        + raw(CONTINUATION, b"", fin=False)
        + raw(CONTINUATION, length=1)[:2],
        1009,
        too_big,
        limit=100,
    )
    cases["whole small text over the limit"] = Broken(
        raw(TEXT, b"x" * 11), 1009, "Exceeded maximum message size: 10 bytes", limit=10
    )
    cases["101 bytes announced to a client"] = Broken(
        raw(BINARY, length=101, masked=False)[:2], 1009, too_big, client=True, limit=100
    )
    cases["after control frames"] = Broken(
        raw(PING, b"p") + raw(PONG, b"q") + raw(TEXT, length=101)[:2],
        1009,
        too_big,
        (Ping(b"p"), Pong(b"q")),
        limit=100,
    )
    cases["close of one byte"] = Broken(raw(CLOSE, b"\x03"), 1002, "one-byte")
    for code in (999, 1004, 1005, 1006, 1014, 1015, 2999, 5000):
        cases[f"close code {code}"] = Broken(raw(CLOSE, close(code)), 1002, "invalid close code")
    cases["close reason not UTF-8"] = Broken(raw(CLOSE, close(1000, b"\xff")), 1007, "UTF-8")
    return [pytest.param(case, id=name) for name, case in cases.items()]


@BY_BYTE
@pytest.mark.parametrize("case", _failures())
def test_failures(case: Broken, by_byte: bool) -> None:
    code, client = case.code, case.client
    ws = protocol(client=client, max_message_size=case.limit, deflate=case.deflate)
    before = raw(TEXT, b"before", masked=not client)
    after = raw(TEXT, b"after", masked=not client)
    events = feed(ws, before + case.data, by_byte=by_byte)
    assert events[:-1] == ["before", *case.delivered]
    failure = events[-1]
    assert isinstance(failure, Failure)
    assert failure.code == code
    assert re.search(case.reason, failure.reason), failure.reason
    # One close frame saying so (after the pongs owed), masked from a client.
    pongs = [(OP_PONG, e.payload) for e in case.delivered if isinstance(e, Ping)]
    closing = (OP_CLOSE, close(code, failure.reason.encode()))
    assert sent(ws, client=client) == [*pongs, closing]
    assert ws.state is State.CLOSED
    assert ws.failed
    assert (ws.close_code, ws.close_reason) == (code, failure.reason)
    assert feed(ws, after) == []
    assert ws.receive_eof() == []
    assert ws.data_to_send() == b""


def test_a_failure_after_our_close_sends_nothing_more() -> None:
    ws = protocol()
    ws.send_close(1001, "going")
    assert feed(ws, raw(TEXT, b"\xff")) == [Failure(1007, "invalid UTF-8 in a text message")]
    assert ws.data_to_send() == b""
    assert ws.failed
    assert ws.state is State.CLOSED
    assert (ws.close_code, ws.close_reason) == (1001, "going")  # ours, as sent


# -- what a valid stream gives -----------------------------------------------------


@BY_BYTE
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(raw(TEXT), [""], id="empty text"),
        pytest.param(raw(BINARY), [b""], id="empty binary"),
        pytest.param(raw(TEXT, KOSME), ["κόσμε"], id="multi-byte text"),
        *(
            pytest.param(raw(BINARY, b"\xa5" * n), [b"\xa5" * n], id=f"{n} bytes")
            for n in (125, 126, 65535, 65536)
        ),
        pytest.param(raw(TEXT, b"a" * 200), ["a" * 200], id="text over 125 bytes"),
        pytest.param(
            raw(BINARY, b"ab", fin=False) + raw(CONTINUATION, b"", fin=False) + raw(CONTINUATION),
            [b"ab"],
            id="empty fragments",
        ),
        pytest.param(
            raw(TEXT, KOSME[:1], fin=False) + raw(CONTINUATION, KOSME[1:]),
            ["κόσμε"],
            id="a character cut across fragments",
        ),
        pytest.param(
            b"".join(
                raw(TEXT if i == 0 else CONTINUATION, bytes([byte]), fin=i == 3)
                for i, byte in enumerate("😀".encode())
            ),
            ["😀"],
            id="four bytes, four fragments",
        ),
        pytest.param(
            raw(TEXT, b"Hel", fin=False)
            + raw(PING, b"p")
            + raw(CONTINUATION, b"lo", fin=False)
            + raw(PONG, b"q")
            + raw(CONTINUATION, b"!")
            + raw(BINARY, b"next"),
            [Ping(b"p"), Pong(b"q"), "Hello!", b"next"],
            id="control frames inside a fragmented message",
        ),
    ],
)
def test_messages(data: bytes, expected: list[Event], by_byte: bool) -> None:
    ws = protocol()
    assert feed(ws, data, by_byte=by_byte) == expected
    assert ws.state is State.OPEN
    assert not ws.failed


@BY_BYTE
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(raw(TEXT, b"x" * 100), id="one frame"),
        pytest.param(raw(BINARY, b"x" * 100), id="binary"),
        pytest.param(
            raw(TEXT, b"x" * 60, fin=False) + raw(CONTINUATION, b"x" * 40), id="fragments"
        ),
        pytest.param(
            raw(TEXT, b"x" * 100, fin=False)
            + raw(CONTINUATION, b"", fin=False)
            + raw(CONTINUATION),
            id="empty fragments after it",
        ),
    ],
)
def test_a_message_of_exactly_the_limit(data: bytes, by_byte: bool) -> None:
    ws = protocol(max_message_size=100)
    [message] = feed(ws, data, by_byte=by_byte)
    assert len(message) == 100
    assert ws.state is State.OPEN


def test_a_big_message_in_many_reads() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = raw(BINARY, payload[:300_000], fin=False) + raw(CONTINUATION, payload[300_000:])
    ws = protocol(max_message_size=len(payload))
    events = []
    for chunk in chunked(data, [4096] * (len(data) // 4096)):
        events += ws.receive_data(chunk)
    assert events == [payload]


def test_a_frame_not_yet_whole_waits() -> None:
    ws = protocol(max_message_size=100)
    data = raw(TEXT, b"x" * 100)
    assert ws.receive_data(data[:-1]) == []
    assert ws.receive_data(data[-1:]) == ["x" * 100]


@BY_BYTE
def test_compressed_messages_when_deflate_was_negotiated(by_byte: bool) -> None:
    ws = protocol(deflate=True)
    text = "κόσμε " * 50
    parts = deflated(text.encode())
    data = (
        raw(BINARY, deflated(b"\x00\x01"), rsv=0b100)
        + raw(TEXT, b"plain")  # RSV1 clear: not compressed
        + raw(TEXT, parts[:7], fin=False, rsv=0b100)
        + raw(PING, b"between")
        + raw(CONTINUATION, parts[7:20], fin=False)
        + raw(CONTINUATION, parts[20:])
        + raw(TEXT, b"", rsv=0b100)  # an empty message, compressed: no payload at all
    )
    assert feed(ws, data, by_byte=by_byte) == [b"\x00\x01", "plain", Ping(b"between"), text, ""]
    assert ws.state is State.OPEN


def test_a_compressed_message_of_exactly_the_limit() -> None:
    ws = protocol(deflate=True, max_message_size=10_000)
    assert feed(ws, raw(BINARY, deflated(bytes(10_000)), rsv=0b100)) == [bytes(10_000)]


def test_what_deflate_sends_is_read_back_by_the_other_role() -> None:
    for sender_is_client in (False, True):
        sender = protocol(client=sender_is_client, deflate=True)
        receiver = protocol(client=not sender_is_client, deflate=True)
        big = "chatty json " * 100
        data = sender.send_text(big) + sender.send_binary(b"\x00" * 500) + sender.send_text("")
        assert data[0] & 0x40  # compressed: RSV1
        assert len(data) < 200
        assert feed(receiver, data) == [big, b"\x00" * 500, ""]


# -- control frames and the closing handshake ---------------------------------------


def test_a_ping_is_answered_with_a_pong_of_its_payload() -> None:
    ws = protocol()
    assert feed(ws, raw(PING, b"one") + raw(PING) + raw(PING, bytes(125))) == [
        Ping(b"one"),
        Ping(b""),
        Ping(bytes(125)),
    ]
    assert ws.data_to_send() == (
        encode(OP_PONG, b"one") + encode(OP_PONG) + encode(OP_PONG, bytes(125))
    )
    assert ws.data_to_send() == b""  # once
    assert feed(ws, raw(PONG, b"unsolicited")) == [Pong(b"unsolicited")]
    assert ws.data_to_send() == b""


def test_no_pong_once_we_sent_our_close() -> None:
    ws = protocol()
    ws.send_close()
    assert feed(ws, raw(PING, b"late")) == [Ping(b"late")]
    assert ws.data_to_send() == b""


@BY_BYTE
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"", Close(1005, ""), id="no code: 1005"),
        pytest.param(close(1000), Close(1000, ""), id="1000"),
        pytest.param(close(1001, b"bye"), Close(1001, "bye"), id="1001 bye"),
        pytest.param(close(1013), Close(1013, ""), id="1013"),
        pytest.param(close(3000), Close(3000, ""), id="3000"),
        pytest.param(close(4999, "é".encode() * 61), Close(4999, "é" * 61), id="longest"),
    ],
)
def test_the_peers_close_is_echoed(payload: bytes, expected: Close, by_byte: bool) -> None:
    ws = protocol()
    assert feed(ws, raw(CLOSE, payload) + raw(TEXT, b"ignored"), by_byte=by_byte) == [expected]
    assert ws.data_to_send() == encode(OP_CLOSE, payload)  # 1005: an empty close frame
    assert ws.state is State.CLOSED
    assert not ws.failed
    assert (ws.close_code, ws.close_reason) == expected
    assert ws.receive_eof() == []


def test_no_echo_when_we_closed_first() -> None:
    ws = protocol()
    assert ws.send_close(1001, "bye") == encode(OP_CLOSE, close(1001, b"bye"))
    assert ws.state is State.CLOSING
    # Messages still come until the peer's close frame.
    data = raw(TEXT, b"still") + raw(BINARY, b"here") + raw(CLOSE, close(1000))
    assert feed(ws, data) == ["still", b"here", Close(1000, "")]
    assert ws.data_to_send() == b""
    assert ws.state is State.CLOSED
    assert not ws.failed
    assert (ws.close_code, ws.close_reason) == (1001, "bye")


def test_a_close_inside_a_fragmented_message_ends_it() -> None:
    ws = protocol()
    assert feed(ws, raw(TEXT, b"part", fin=False) + raw(CLOSE, close(1000))) == [Close(1000, "")]
    assert ws.data_to_send() == encode(OP_CLOSE, close(1000))


@pytest.mark.parametrize("closing", [False, True], ids=["open", "closing"])
def test_end_of_stream(closing: bool) -> None:
    ws = protocol()
    if closing:
        ws.send_close(1000)
    assert ws.receive_data(raw(TEXT, b"half")[:-1]) == []
    assert ws.receive_eof() == [Close(1006, "")]
    assert ws.receive_eof() == []
    assert ws.receive_data(b"more") == []
    assert ws.state is State.CLOSED
    assert not ws.failed
    assert ws.close_code == (1000 if closing else 1006)
    assert ws.data_to_send() == b""


def _closing(ws: Protocol) -> None:
    ws.send_close()


def _closed_by_peer(ws: Protocol) -> None:
    ws.receive_data(raw(CLOSE, close(1000)))


def _failed(ws: Protocol) -> None:
    ws.receive_data(raw(TEXT, b"\xff"))


def _eof(ws: Protocol) -> None:
    ws.receive_eof()


@pytest.mark.parametrize("reach", [_closing, _closed_by_peer, _failed, _eof])
@pytest.mark.parametrize(
    "send",
    [
        lambda ws: ws.send_text("x"),
        lambda ws: ws.send_binary(b"x"),
        lambda ws: ws.send_ping(),
        lambda ws: ws.send_pong(),
        lambda ws: ws.send_close(),
    ],
    ids=["text", "binary", "ping", "pong", "close"],
)
def test_nothing_may_be_sent_once_closing(
    reach: Callable[[Protocol], None], send: Callable[[Protocol], bytes]
) -> None:
    ws = protocol()
    reach(ws)
    assert ws.state is not State.OPEN
    with pytest.raises(StateError):
        send(ws)


@pytest.mark.parametrize(
    ("code", "reason"), [(1005, "why"), (1006, ""), (1015, ""), (999, ""), (1000, "x" * 124)]
)
def test_an_invalid_close_is_refused_and_the_connection_stays_open(code: int, reason: str) -> None:
    ws = protocol()
    with pytest.raises(ValueError):
        ws.send_close(code, reason)
    assert ws.state is State.OPEN
    assert ws.close_code is None
    assert ws.send_text("still open") == encode(0x1, b"still open")


def test_what_a_server_sends() -> None:
    ws = protocol()
    assert ws.send_text("é") == b"\x81\x02\xc3\xa9"
    assert ws.send_text(b"pre-encoded") == b"\x81\x0bpre-encoded"
    assert ws.send_binary(b"\x00") == b"\x82\x01\x00"
    assert ws.send_ping(b"p") == b"\x89\x01p"
    assert ws.send_pong(b"q") == b"\x8a\x01q"
    assert ws.send_close(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert ws.data_to_send() == b""


def test_a_client_masks_what_it_sends_and_a_server_reads_it() -> None:
    client, server = protocol(client=True), protocol()
    wire = client.send_text("héllo") + client.send_binary(b"\x00\xff") + client.send_ping(b"?")
    assert [f.data for f in parse_frames(wire, masked=True)] == [
        "héllo".encode(),
        b"\x00\xff",
        b"?",
    ]
    assert feed(server, wire, by_byte=True) == ["héllo", b"\x00\xff", Ping(b"?")]
    assert feed(client, server.data_to_send() + server.send_text("back")) == [Pong(b"?"), "back"]
    # The closing handshake, started by the client.
    assert feed(server, client.send_close(1000, "done")) == [Close(1000, "done")]
    assert feed(client, server.data_to_send()) == [Close(1000, "done")]
    assert client.data_to_send() == b""  # no echo of the echo
    assert client.state is server.state is State.CLOSED
    # A client answers a ping with a masked pong, and echoes a close masked.
    client = protocol(client=True)
    assert feed(client, encode(0x9, b"hb")) == [Ping(b"hb")]
    assert feed(client, encode(OP_CLOSE, close(1001))) == [Close(1001, "")]
    assert [(f.opcode, f.data) for f in parse_frames(client.data_to_send(), masked=True)] == [
        (OP_PONG, b"hb"),
        (OP_CLOSE, close(1001)),
    ]


def test_a_wsproto_client_and_server_talk_to_ours() -> None:
    """Real peers: wsproto on the other end, both roles."""
    ours = protocol()
    peer = Connection(ConnectionType.CLIENT)
    assert feed(ours, peer.send(TextMessage(data="to server"))) == ["to server"]
    peer.receive_data(ours.send_text("to client") + ours.send_close(1000, "bye"))
    [message, closing] = peer.events()
    assert isinstance(message, TextMessage) and message.data == "to client"
    assert isinstance(closing, CloseConnection)
    assert feed(ours, peer.send(closing.response())) == [Close(1000, "bye")]

    ours = protocol(client=True)
    peer = Connection(ConnectionType.SERVER)
    peer.receive_data(ours.send_text("to server"))
    [message] = peer.events()
    assert isinstance(message, TextMessage) and message.data == "to server"
    assert feed(ours, peer.send(CloseConnection(code=1001, reason="away"))) == [Close(1001, "away")]
    peer.receive_data(ours.data_to_send())
    assert [type(e) for e in peer.events()] == [CloseConnection]
    assert peer.state is ConnectionState.CLOSED


# -- known differences from the reference implementations ------------------------------


def websockets_frames(data: bytes, max_size: int | None = None) -> tuple[list[Any], int | None]:
    """The websockets library's frames and its failure's code, if it failed."""
    peer = WebsocketsProtocol(Side.SERVER, max_size=max_size)
    peer.receive_data(data)
    frames = peer.events_received()
    failed = peer.close_sent.code if peer.parser_exc is not None and peer.close_sent else None
    return [(int(f.opcode), f.data) for f in frames], failed


def test_differences_from_websockets() -> None:
    """Each is websockets' choice, not wsroute's; wsroute agrees with wsproto on each."""
    cases = [
        # 1014 (Bad Gateway) is taken by websockets; wsroute refuses it as Autobahn
        # (7.9.x) and wsproto do.
        (raw(CLOSE, close(1014)), [Failure(1002, "")], ([(OP_CLOSE, close(1014))], None)),
        # Lengths not in their shortest form are taken by websockets.
        (raw(TEXT, b"hi", width=16), [Failure(1002, "")], ([(0x1, b"hi")], None)),
        (raw(TEXT, b"hi", width=64), [Failure(1002, "")], ([(0x1, b"hi")], None)),
        # websockets refuses a close frame inside a fragmented message; RFC 6455
        # allows control frames there.
        (
            raw(TEXT, b"a", fin=False) + raw(CLOSE, close(1000)),
            [Close(1000, "")],
            ([(0x1, b"a")], 1002),
        ),
        # websockets' Protocol leaves UTF-8 to its connection layer.
        (raw(TEXT, b"\xff"), [Failure(1007, "")], ([(0x1, b"\xff")], None)),
        # A bad code and a bad reason: websockets decodes the reason first.
        (raw(CLOSE, close(1004, b"\xff")), [Failure(1002, "")], ([], 1007)),
    ]
    for data, ours, theirs in cases:
        assert wsroute_reads([data]).events == ours
        assert wsproto_reads([data]).events == ours
        assert websockets_frames(data) == theirs


def test_websockets_counts_control_frames_against_its_size_limit() -> None:
    """wsroute limits messages; control frames are 125 bytes at most anyway."""
    ping = raw(PING, bytes(125))
    inside = raw(BINARY, bytes(90), fin=False) + raw(PING, bytes(20)) + raw(CONTINUATION)
    for data, ours in ((ping, [Ping(bytes(125))]), (inside, [Ping(bytes(20)), bytes(90)])):
        assert wsroute_reads([data], max_message_size=100).events == ours
        assert websockets_frames(data, max_size=100)[1] == 1009
    # A 64-bit length with its top bit set: a protocol error here (and for wsproto),
    # too big for websockets.
    top = raw(BINARY, length=2**63, width=64)
    assert wsroute_reads([top], max_message_size=100).events == [Failure(1002, "")]
    assert websockets_frames(top, max_size=100) == ([], 1009)


def test_wsproto_fails_inside_a_frame_wsroute_at_its_end() -> None:
    """wsproto decodes a data frame's payload as it arrives; wsroute checks a frame's
    UTF-8 once the frame is whole (fragment by fragment, not byte by byte)."""
    data = raw(TEXT, b"\xff" + bytes(199))
    ours = protocol()
    assert ours.receive_data(data[:-1]) == []
    peer = Connection(ConnectionType.SERVER)
    peer.receive_data(data[:-1])
    [failure] = peer.events()
    assert isinstance(failure, CloseConnection) and failure.code == 1007
    assert ours.receive_data(data[-1:]) == [Failure(1007, "invalid UTF-8 in a text message")]


def test_wsproto_has_no_size_limit() -> None:
    data = raw(BINARY, bytes(101))
    assert wsroute_reads([data], max_message_size=100).events == [Failure(1009, "")]
    assert wsproto_reads([data]).events == [bytes(101)]


# -- properties ----------------------------------------------------------------------


class Part(NamedTuple):
    """One frame of a generated stream; ``opcode``, ``fin`` and ``length`` describe a
    well-formed data frame (``opcode`` is None for any other)."""

    data: bytes
    opcode: int | None = None
    fin: bool = True
    length: int = 0


def data_frame(opcode: int, payload: bytes, fin: bool = True) -> Part:
    return Part(frame(opcode, payload, fin=fin), opcode, fin, len(payload))


#: Characters of every UTF-8 length, at the edges of each (and of the surrogates).
CHARACTERS = (
    "a~\x00\x7f"  # one byte
    "\x80\xe9\u07ff"  # two
    "\u0800\u20ac\ud7ff\ue000\ufeff\uffff"  # three
    "\U00010000\U0001f600\U0010ffff"  # four
)
characters = st.sampled_from(CHARACTERS)
texts = st.one_of(
    st.text(characters, max_size=20), st.text(characters, min_size=40, max_size=120)
).map(str.encode)
binaries = st.one_of(st.binary(max_size=20), st.binary(min_size=100, max_size=300))
EDGE_CODES = [0, 999, 1000, 1001, 1003, 1004, 1005, 1006, 1007, 1011, 1013, 1014, 1015]
EDGE_CODES += [1016, 2999, 3000, 3999, 4000, 4999, 5000, 65535]

FLAWS = (
    "rsv",
    "unmasked",
    "long16",
    "long64",
    "top bit",
    "continuation",
    "new message",
    "utf8",
    "utf8 fragment",
    "utf8 cut short",
    "control too long",
    "fragmented control",
    "opcode",
)
#: The flaws the websockets library's Protocol reports as wsroute does.
WEBSOCKETS_FLAWS = (
    "rsv",
    "unmasked",
    "continuation",
    "new message",
    "control too long",
    "fragmented control",
    "opcode",
)
UTF8_FLAWS = ("utf8", "utf8 fragment", "utf8 cut short")


def close_payloads(websockets: bool) -> st.SearchStrategy[bytes]:
    codes = [c for c in EDGE_CODES if c != 1014] if websockets else EDGE_CODES
    any_code = st.integers(0, 65535).filter(lambda c: not websockets or c != 1014)
    reasons = st.text(characters, max_size=30).map(str.encode)
    if not websockets:  # see test_differences_from_websockets: bad code, bad reason
        reasons = reasons | st.binary(max_size=20)
    coded = st.builds(close, st.sampled_from(codes) | any_code, reasons)
    return st.one_of(st.just(b""), st.binary(min_size=1, max_size=1), coded, coded, coded)


CLOSE_PAYLOADS = close_payloads(websockets=False)
WEBSOCKETS_CLOSE_PAYLOADS = close_payloads(websockets=True)
control_payloads = st.binary(max_size=125)
data_opcodes = st.sampled_from([TEXT, BINARY])
control_opcodes = st.sampled_from([PING, PONG, CLOSE])
#: Reserved opcodes, the edges of both ranges as often as any.
reserved_opcodes = st.sampled_from([3, 7, 0xB, 0xF]) | st.sampled_from([4, 5, 6, 0xC, 0xD, 0xE])
#: Where to cut a payload into fragments, in thousandths of its length.
cut_points = st.lists(st.integers(0, 1000), min_size=1, max_size=4)


def sizes(*edges: int, most: int) -> st.SearchStrategy[int]:
    """Payload sizes: the ``edges`` as often as any other."""
    return st.sampled_from(edges) | st.integers(0, most)


@st.composite
def flawed(draw: st.DrawFn, flaws: st.SearchStrategy[str]) -> list[Part]:
    """Frames that fail the connection (the first of them, or the last)."""
    flaw = draw(flaws)
    payload = draw(binaries)
    if flaw == "rsv":
        opcode = draw(st.sampled_from([TEXT, BINARY, PING]))
        return [Part(frame(opcode, payload[:125], rsv=draw(st.sampled_from(range(1, 8)))))]
    if flaw == "unmasked":
        opcode = draw(st.sampled_from([TEXT, BINARY, CONTINUATION, PING, CLOSE]))
        return [Part(frame(opcode, payload[:125], mask=False))]
    if flaw == "long16":
        return [Part(raw(BINARY, bytes(draw(sizes(0, 125, most=125))), width=16))]
    if flaw == "long64":
        return [Part(raw(BINARY, bytes(draw(sizes(0, 125, 126, 65535, most=300))), width=64))]
    if flaw == "top bit":
        length = draw(st.sampled_from([2**63, 2**64 - 1]) | st.integers(2**63, 2**64 - 1))
        return [Part(raw(BINARY, length=length, width=64))]
    if flaw == "continuation":
        return [Part(frame(CONTINUATION, payload, fin=draw(st.booleans())))]
    if flaw == "new message":
        first, then = draw(data_opcodes), draw(data_opcodes)
        return [Part(frame(first, b"a", fin=False)), Part(frame(then, payload))]
    if flaw == "utf8":
        return [data_frame(TEXT, payload)]  # random bytes: mostly not UTF-8
    if flaw == "utf8 fragment":
        cut = draw(st.integers(0, len(payload)))
        return [
            data_frame(TEXT, draw(texts), fin=False),
            data_frame(CONTINUATION, payload[:cut], fin=False),
            data_frame(CONTINUATION, payload[cut:]),
        ]
    if flaw == "utf8 cut short":  # valid until a character's last byte is missing
        text = draw(texts) + draw(st.sampled_from(["é", "€", "😀"])).encode()[:-1]
        return draw(fragmented(None, st.just(text)))
    if flaw == "control too long":
        size = draw(sizes(126, most=200).filter(lambda n: n >= 126))
        return [Part(frame(draw(control_opcodes), bytes(size)))]
    if flaw == "fragmented control":
        return [Part(frame(draw(control_opcodes), payload[:125], fin=False))]
    assert flaw == "opcode"
    return [Part(frame(draw(reserved_opcodes), payload[:125]))]


@st.composite
def fragmented(
    draw: st.DrawFn,
    controls: st.SearchStrategy[list[int]] | None,
    text: st.SearchStrategy[bytes] | None = None,
) -> list[Part]:
    """A message in fragments cut anywhere (through a character's bytes, too), with
    ``controls`` between them; a text one of ``text`` if given."""
    opcode = TEXT if text is not None else draw(data_opcodes)
    payload = draw(text if text is not None else texts if opcode == TEXT else binaries)
    cuts = sorted(n * len(payload) // 1000 for n in draw(cut_points))
    bounds = [0, *cuts, len(payload)]
    parts = []
    for n, (start, stop) in enumerate(itertools.pairwise(bounds)):
        last = n == len(bounds) - 2
        parts.append(data_frame(opcode if n == 0 else CONTINUATION, payload[start:stop], last))
        if controls is not None and not last:
            for control in draw(controls):
                body = draw(CLOSE_PAYLOADS if control == CLOSE else control_payloads)
                parts.append(Part(frame(control, body)))
    return parts


def streams(
    *,
    flaws: tuple[str, ...] = FLAWS,
    interleave: bool = True,
    close_inside: bool = True,
    websockets: bool = False,
    flawed_only: bool = False,
) -> st.SearchStrategy[list[Part]]:
    """Streams of frames a client might send: valid messages and control frames, then
    frames with one of ``flaws``, a close frame, or nothing (only the flawed frames if
    ``flawed_only``), then a few more. Control frames inside fragmented messages if
    ``interleave``, a close among them if ``close_inside``; close frames the websockets
    library reads as wsroute does if ``websockets``."""
    inside = [PING, PONG, PING, PONG, *([CLOSE] if close_inside else [])]
    controls = st.lists(st.sampled_from(inside), max_size=2) if interleave else None
    closes = (WEBSOCKETS_CLOSE_PAYLOADS if websockets else CLOSE_PAYLOADS).map(
        lambda p: [Part(frame(CLOSE, p))]
    )
    items = [
        texts.map(lambda t: [data_frame(TEXT, t)]),
        texts.map(lambda t: [data_frame(TEXT, t)]),
        binaries.map(lambda b: [data_frame(BINARY, b)]),
        control_payloads.map(lambda p: [Part(frame(PING, p))]),
        control_payloads.map(lambda p: [Part(frame(PONG, p))]),
        fragmented(controls),
        fragmented(controls),
        st.sampled_from([65535, 65536]).map(lambda n: [data_frame(BINARY, b"\x5a" * n)]),
    ]
    valid = st.lists(st.one_of(items), max_size=6)
    after = st.lists(st.one_of(*items, closes), max_size=3)
    if flawed_only:
        ending = flawed(st.sampled_from(flaws))
    elif flaws:
        ending = st.one_of(flawed(st.sampled_from(flaws)), closes, st.just([]))
    else:
        ending = st.one_of(closes, st.just([]))
    return st.builds(
        lambda before, end, rest: [p for parts in [*before, end, *rest] for p in parts],
        valid,
        ending,
        after,
    )


def joined(parts: list[Part]) -> bytes:
    return b"".join(part.data for part in parts)


cut_lists = st.lists(st.integers(1, 600), max_size=12)
EXAMPLES = settings(max_examples=200, deadline=None)


@EXAMPLES
@given(streams(), cut_lists)
def test_same_as_wsproto(parts: list[Part], cuts: list[int]) -> None:
    chunks = chunked(joined(parts), cuts)
    assert wsroute_reads(chunks) == wsproto_reads(chunks)


FLAWED = {flaw: streams(flaws=(flaw,), close_inside=False, flawed_only=True) for flaw in FLAWS}


@settings(max_examples=20, deadline=None)
@pytest.mark.parametrize("flaw", FLAWS)
@given(data=st.data(), cuts=cut_lists)
def test_same_as_wsproto_for_each_flaw(flaw: str, data: st.DataObject, cuts: list[int]) -> None:
    """Every kind of flaw on every run, after valid frames."""
    parts = data.draw(FLAWED[flaw])
    chunks = chunked(joined(parts), cuts)
    ours = wsroute_reads(chunks)
    assert ours == wsproto_reads(chunks)
    if flaw not in ("utf8", "utf8 fragment"):  # random bytes may be UTF-8
        assert isinstance(ours.events[-1], Failure)


def crossing(parts: list[Part], limit: int) -> int | None:
    """The index of the data frame that takes its message past ``limit`` bytes."""
    size = 0
    for n, part in enumerate(parts):
        if part.opcode is None:
            continue  # a control frame
        total = size + part.length if part.opcode == CONTINUATION else part.length
        if total > limit:
            return n
        size = 0 if part.fin else total
    return None


def too_big(reading: Reading) -> Reading:
    """``reading`` of what came before the frame that is too big, then a 1009."""
    if reading.events and isinstance(reading.events[-1], Close | Failure):
        return reading  # it ended before the limit
    return Reading(
        [*reading.events, Failure(1009, "")], [*reading.answers, (OP_CLOSE, close(1009))]
    )


def message_sizes(parts: list[Part]) -> list[int]:
    """How big each message in ``parts`` is after each of its data frames."""
    sizes, size = [0], 0
    for part in parts:
        if part.opcode is not None:
            size = size + part.length if part.opcode == CONTINUATION else part.length
            sizes.append(size)
    return sizes


#: A limit a byte either side of one of the sizes a message reaches, or a fraction
#: (in thousandths) of the largest.
limits = st.tuples(st.integers(0, 99), st.integers(-1, 1)) | st.tuples(
    st.just(None), st.integers(0, 1100)
)


@EXAMPLES
@given(streams(flaws=UTF8_FLAWS), cut_lists, limits)
def test_same_as_wsproto_up_to_the_size_limit(
    parts: list[Part], cuts: list[int], near: tuple[int | None, int]
) -> None:
    """A message over ``max_message_size`` fails at the header of the frame that takes
    it over; wsproto has no limit: up to that frame, both read the same."""
    sizes = message_sizes(parts)
    index, offset = near
    if index is None:
        limit = max(sizes) * offset // 1000
    else:
        limit = max(0, sizes[index % len(sizes)] + offset)
    ours = wsroute_reads(chunked(joined(parts), cuts), max_message_size=limit)
    n = crossing(parts, limit)
    if n is None:
        assert ours == wsproto_reads([joined(parts)])
    else:
        assert ours == too_big(wsproto_reads([joined(parts[:n])]))


@EXAMPLES
@given(
    streams(flaws=WEBSOCKETS_FLAWS, close_inside=False, websockets=True),
    cut_lists,
)
def test_same_as_websockets(parts: list[Part], cuts: list[int]) -> None:
    chunks = chunked(joined(parts), cuts)
    assert wsroute_reads(chunks) == websockets_reads(chunks)


@EXAMPLES
@given(
    streams(flaws=(), interleave=False, close_inside=False, websockets=True),
    cut_lists,
    st.integers(125, 400),
)
def test_same_as_websockets_with_a_size_limit(
    parts: list[Part], cuts: list[int], limit: int
) -> None:
    """websockets also fails a message from the header of the frame that takes it over
    the limit (it counts control frames too: none inside messages here)."""
    chunks = chunked(joined(parts), cuts)
    assert wsroute_reads(chunks, max_message_size=limit) == websockets_reads(chunks, max_size=limit)


@EXAMPLES
@given(streams(), cut_lists, st.sampled_from([BIG, 150]))
def test_any_split_reads_as_one_read(parts: list[Part], cuts: list[int], limit: int) -> None:
    data = joined(parts)
    assert wsroute_reads(chunked(data, cuts), max_message_size=limit) == wsroute_reads(
        [data], max_message_size=limit
    )


messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=300),
    st.binary(max_size=125).map(Ping),
    st.binary(max_size=125).map(Pong),
)


def send(ws: Protocol, message: str | bytes | Ping | Pong) -> bytes:
    if isinstance(message, Ping):
        return ws.send_ping(message.payload)
    if isinstance(message, Pong):
        return ws.send_pong(message.payload)
    if isinstance(message, str):
        return ws.send_text(message)
    return ws.send_binary(message)


@EXAMPLES
@given(
    st.lists(messages, max_size=8),
    st.one_of(st.none(), st.tuples(st.sampled_from([1000, 1001, 4000]), st.text(max_size=20))),
    cut_lists,
    st.booleans(),
)
def test_what_one_role_sends_the_other_reads(
    sequence: list[Any], closing: tuple[int, str] | None, cuts: list[int], from_client: bool
) -> None:
    sender, reader = protocol(client=from_client), protocol(client=not from_client)
    wire = b"".join(send(sender, message) for message in sequence)
    if closing is not None:
        wire += sender.send_close(*closing)
    # Masked exactly when a client sent it (websockets' parser checks the mask bit).
    assert len(parse_frames(wire, masked=from_client)) == len(sequence) + (closing is not None)
    events = []
    for chunk in chunked(wire, cuts):
        events += reader.receive_data(chunk)
    expected = [*sequence, *([Close(*closing)] if closing else [])]
    assert events == expected
    pongs = [Pong(m.payload) for m in sequence if isinstance(m, Ping)]
    answer = reader.data_to_send()
    assert sender.receive_data(answer) == [*pongs, *([Close(*closing)] if closing else [])]
