"""permessage-deflate's codec (wsroute/_wire/deflate.py; its negotiation is
tests/test_wire_deflate_negotiation.py).

The codec is checked against the ``websockets`` library's permessage-deflate, both
ways and for every combination of context takeover and window bits, and for what
only wsroute does: a compressor shared across connections that leaks nothing from
one message into the next (tests/test_wire_framing.py: a broadcast compressed
once), the inflate limit.
"""

from __future__ import annotations

import zlib

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from wsroute._wire.deflate import TAIL, Codec, Deflate, Settings, TooBig
from wsroute._wire.deflate_negotiation import negotiate
from wsroute._wire.frames import OP_BINARY, OP_TEXT, header

from .test_wire_deflate_negotiation import DEFAULT, PMD, offers

CHATTY = b'{"type":"item_created","data":{"id":42,"name":"a widget","price":1999}}' * 4


# -- options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"level": 0}, "level must be an integer 1-9"),
        ({"level": True}, "level must be an integer 1-9"),
        ({"memory_level": 10}, "memory_level must be an integer 1-9"),
        ({"threshold": -1}, "threshold must be an integer"),
        ({"server_max_window_bits": 8}, "server_max_window_bits must be an integer 9-15"),
        ({"client_max_window_bits": 16}, "client_max_window_bits must be an integer 8-15"),
        ({"server_context_takeover": 1}, "server_context_takeover must be True or False"),
    ],
)
def test_invalid_options_say_what_is_allowed(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Deflate(**options)  # type: ignore[arg-type]


# -- the codec ---------------------------------------------------------------------


def agreed(allowed: Deflate, offered: str = PMD) -> tuple[Codec, Codec]:
    """A server's codec and a client's, as negotiated for ``offered``."""
    result = negotiate(offers(offered), allowed)
    assert result is not None
    settings, answer = result
    return Codec(allowed, settings, answer), Codec(allowed, settings, answer, client=True)


def test_a_server_message_read_by_a_client_and_back() -> None:
    server, client = agreed(Deflate(threshold=0))
    for message in (CHATTY, b"", b"x", bytes(range(256)) * 300):
        assert client.inflate(server.compress(message), 10**6, True) == message
        assert server.inflate(client.compress(message), 10**6, True) == message


def test_without_context_takeover_nothing_of_one_message_is_in_the_next() -> None:
    """The shared compressor is fully flushed after each message: the next one inflates
    on its own, with a fresh decompressor, so one connection's messages can never
    be read back through another's."""
    server, _ = agreed(Deflate(threshold=0))
    first = server.compress(CHATTY)
    second = server.compress(CHATTY)
    assert first == second  # nothing of the first message was referred to
    fresh = zlib.decompressobj(-15)
    assert fresh.decompress(second + TAIL) == CHATTY


def test_with_context_takeover_the_history_is_used() -> None:
    server, client = agreed(Deflate(threshold=0, server_context_takeover=True))
    first = server.compress(CHATTY)
    second = server.compress(CHATTY)
    assert len(second) < len(first) / 4
    assert client.inflate(first, 10**6, True) == CHATTY
    assert client.inflate(second, 10**6, True) == CHATTY


@pytest.mark.parametrize(("opcode", "payload"), [(OP_TEXT, b"x" * 127), (OP_BINARY, b"\x00" * 127)])
def test_messages_under_the_threshold_go_uncompressed(opcode: int, payload: bytes) -> None:
    server, _ = agreed(Deflate(threshold=128))
    assert server.frame(opcode, payload) == header(opcode, 127) + payload


def test_messages_at_the_threshold_are_compressed() -> None:
    server, client = agreed(Deflate(threshold=128))
    wire = server.frame(OP_TEXT, b"a" * 128)
    assert wire[0] == 0xC1  # FIN, RSV1, text
    assert client.inflate(wire[2:], 1000, True) == b"a" * 128
    assert server.frame(OP_BINARY, b"\x00" * 128)[0] == 0xC2  # binary


def test_connections_without_context_takeover_share_a_key() -> None:
    """What ``framing`` caches a compressed broadcast under: the same for every
    connection with the same window, none with context takeover."""
    allowed = Deflate(threshold=0)
    keys = {agreed(allowed)[0].shared_key for _ in range(3)}
    assert len(keys) == 1 and None not in keys
    small, _ = agreed(allowed, f"{PMD}; server_max_window_bits=9")
    assert small.shared_key not in keys
    assert agreed(Deflate(server_context_takeover=True))[0].shared_key is None


def test_inflate_stops_at_the_limit() -> None:
    """A bomb: 100 MB of zeros in about 100 KB. Inflating stops one byte past the
    limit, so it never holds more than a message may."""
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(bytes(100 * 2**20)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < 200_000
    server, _ = agreed(DEFAULT)
    with pytest.raises(TooBig):
        server.inflate(data[:-4], 2**20, True)
    # In parts, the limit shrinking as the message grows.
    with pytest.raises(TooBig):
        limit = 2**20
        for start in range(0, len(data) - 4, 1000):
            limit -= len(server.inflate(data[start : start + 1000], limit, False))


def test_a_message_that_ends_the_deflate_stream_starts_a_new_one() -> None:
    """RFC 7692 section 7.2.3.4: a peer may end a message with a final block (BFINAL);
    the next message then starts a new stream."""
    server, _ = agreed(Deflate(client_context_takeover=True))
    for message in (b"first", b"second"):
        assert server.inflate(zlib.compress(message, wbits=-15), 100, True) == message


def test_data_after_the_final_block_is_an_error() -> None:
    server, _ = agreed(DEFAULT)
    with pytest.raises(zlib.error, match="after the final"):
        server.inflate(zlib.compress(b"x", wbits=-15) + b"\x00", 100, True)


# -- against the websockets library -----------------------------------------------


def websockets_side(settings: Settings, *, client: bool) -> PerMessageDeflate:
    """The ``websockets`` library's permessage-deflate for the same settings."""
    server_side = (
        settings.client_no_context_takeover,
        settings.server_no_context_takeover,
        settings.client_max_window_bits,
        settings.server_max_window_bits,
    )
    if client:
        return PerMessageDeflate(server_side[1], server_side[0], server_side[3], server_side[2])
    return PerMessageDeflate(*server_side)


SETTINGS = [
    Settings(True, True, 15, 15),
    Settings(False, False, 15, 15),
    Settings(False, True, 9, 15),
    Settings(True, False, 15, 10),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
@pytest.mark.parametrize("we_are_client", [False, True], ids=["wsroute server", "wsroute client"])
def test_same_messages_as_websockets(settings: Settings, we_are_client: bool) -> None:
    allowed = Deflate(threshold=0, server_context_takeover=True, client_context_takeover=True)
    ours = Codec(allowed, settings, PMD, client=we_are_client)
    theirs = websockets_side(settings, client=not we_are_client)
    messages = [CHATTY, CHATTY, b"", bytes(range(256)) * 100, CHATTY[:50]]
    for message in messages:
        # Ours to theirs.
        sent = Frame(Opcode.TEXT, ours.compress(message), rsv1=True)
        assert theirs.decode(sent).data == message
        # Theirs to ours.
        received = theirs.encode(Frame(Opcode.TEXT, message))
        assert received.rsv1
        assert ours.inflate(bytes(received.data), 10**6, True) == message


def test_the_server_frame_is_what_websockets_reads() -> None:
    server, _ = agreed(Deflate(threshold=0))
    wire = server.frame(OP_TEXT, CHATTY)
    assert wire[1] == len(wire) - 2  # short enough for a 7-bit length
    theirs = websockets_side(Settings(True, True, 15, 15), client=True)
    assert theirs.decode(Frame(Opcode(OP_TEXT), wire[2:], rsv1=True)).data == CHATTY
