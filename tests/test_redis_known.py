"""What a Redis session remembers of its topics' history hashes
(``wsroute.brokers.redis.known``), on its own; tests/test_redis_history.py checks it
against the script's replies."""

from __future__ import annotations

import msgpack
import pytest

from wsroute import History, Position
from wsroute.brokers.redis import kept
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


def test_a_kept_publish_packs_its_context_once_until_something_new_is_learnt() -> None:
    known = Known()
    history, other = History(size=10, ttl=60), History(size=10, ttl=60)
    first = kept.publish_call(b"p:", "t", b"p:t", b"1", history, b"seed", known)
    assert first.args[0] == b"1" and first.known == (b"", b"", b"", "")
    again = kept.publish_call(b"p:", "t", b"p:t", b"2", history, b"seed", known)
    assert again.args[1] is first.args[1]  # packed once
    # The script unpacks it as these strings (msgpack, no binary type: Redis's cmsgpack).
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(first.args[1])
    assert list(unpacker) == [b"seed", b"10", b"60000", b"2592000000", b"p:t", b"", b"", b""]
    assert b"\xc4" not in first.args[1]
    # Another History for the topic (equal or not) is packed anew.
    assert (
        kept.publish_call(b"p:", "t", b"p:t", b"3", other, b"seed", known).args[1]
        is not (first.args[1])
    )
    # What a reply teaches replaces the context; a bare offset teaches nothing.
    known.learn("t", [4, b"e", b"10", b"20", 1])
    learnt = kept.publish_call(b"p:", "t", b"p:t", b"5", other, b"seed", known)
    assert learnt.known == (b"e", b"10", b"20", "e") and learnt.args[1].endswith(
        b"\xa1e\xa210\xa220"
    )
    known.learn("t", 6, learnt.known)
    assert (
        kept.publish_call(b"p:", "t", b"p:t", b"7", other, b"seed", known).args[1]
        is (learnt.args[1])
    )
    # Asked (a cluster's ASK): kept without publishing, the channel replaced by "".
    assert learnt.asked().args == [b"5", learnt.args[1], b""]


def test_contexts_are_bounded_as_topics_are() -> None:
    known = Known()
    history = History(size=10, ttl=60)
    for n in range(KNOWN_LIMIT + 1):
        kept.publish_call(b"p:", f"t{n}", b"p:t", b"1", history, b"seed", known)
    assert len(known.contexts) == KNOWN_LIMIT and "t0" not in known.contexts
