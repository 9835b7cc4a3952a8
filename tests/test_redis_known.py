"""What a Redis session remembers of its topics' history hashes
(``wsroute.brokers.redis.known``), on its own; tests/test_redis_history.py checks it
against the script's replies."""

from __future__ import annotations

import pytest

from wsroute import Position
from wsroute.brokers.redis.known import KNOWN_LIMIT, Known


def test_a_session_remembers_a_bounded_number_of_topics() -> None:
    known = Known()
    for n in range(KNOWN_LIMIT + 1):
        assert known.learn(f"t{n}", [n + 1, b"e", b"10", b"20", 1]) == Position(n + 1, "e")
    assert known.of("t0") == (b"", b"", b"")  # learnt first: forgotten
    assert known.of("t1") == (b"e", b"10", b"20")
    known.learn("t1", [3, b"f", b"11", b"21", 1])  # learnt anew, in its place
    assert known.of("t1") == (b"f", b"11", b"21")
    known.learn("last", [1, b"e", b"10", b"20", 0])
    assert known.of("t1") == (b"", b"", b"") and known.of("t2") == (b"e", b"10", b"20")
    # A bare offset: published under the epoch the call was made with, nothing new.
    assert known.learn("t2", 7, (b"e", b"10", b"20", "e")) == Position(7, "e")
    assert known.of("t2") == (b"e", b"10", b"20")
    for bad in (
        None,
        7,  # a bare offset to a call made without an epoch
        [1, b"e", b"10", b"20"],
        [1, "e", b"10", b"20", 1],
        [b"1", b"e", b"10", b"20", 1],
        [1, b"e", b"10", b"20", 2],
    ):
        with pytest.raises(ValueError, match="unexpected reply"):
            known.learn("t", bad)
    assert len(known._topics) == KNOWN_LIMIT
