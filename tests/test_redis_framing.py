"""How a kept event travels on its channel (``wsroute.brokers.redis.framing``), on its
own; tests/test_redis_history.py checks the frames that Redis carries."""

from __future__ import annotations

import pytest

from wsroute import Position
from wsroute.brokers.redis import framing


def test_plain_payloads_that_look_marked_are_escaped_once() -> None:
    for data in (b"\x04", b"\x05", b"\x04\x05kept?", b"\x05\x05"):
        sent = framing.escape(data)
        assert sent == b"\x05" + data
        assert framing.unframe(sent) == (data, None)
    for data in (b"", b"{}", b"\x01sender\n{}", b"\x03msgpack"):
        assert framing.escape(data) is data  # unchanged, not even copied


def test_a_kept_payload_carries_offset_and_epoch_before_the_data() -> None:
    assert framing.unframe(b"\x0457:k3JqbW1x\n{}") == (b"{}", Position(57, "k3JqbW1x"))
    assert framing.unframe(b"\x041:e\n\x04\n:") == (b"\x04\n:", Position(1, "e"))
    for bad in (b"\x04", b"\x0457:k3Jq", b"\x04:e\nx", b"\x04x:e\nx", b"\x0457:\nx", b"\x0457e\nx"):
        with pytest.raises(ValueError, match="without its position"):
            framing.unframe(bad)
