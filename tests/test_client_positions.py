"""Where the Python client stands in each topic's history (``wsroute.client._positions``):
what it keeps of the events it receives, and the ``wsroute.recover`` parameter it
presents. Pure: no sockets; tests/test_client_resume.py runs it against a real app."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from wsroute import Position
from wsroute._protocol import MAX_RECOVER_TOPICS, parse_recover
from wsroute.client._positions import MAX_KEPT, MAX_PARAM, Positions, with_param


def event(topic: Any, offset: Any, epoch: Any, type: str = "msg") -> dict[str, Any]:
    return {"type": type, "topic": topic, "data": None, "offset": offset, "epoch": epoch}


def recovery(topic: str, offset: int | None, epoch: str | None, recovered: bool) -> dict[str, Any]:
    data = {"recovered": recovered, "offset": offset, "epoch": epoch, "missed": 0}
    return {"type": "wsroute.recovery", "topic": topic, "data": data}


def decoded(positions: Positions) -> dict[str, Position]:
    """What the server reads from the presented parameter."""
    presented = positions.presented()
    assert presented is not None
    [(_, value)] = parse_qsl(f"wsroute.recover={presented.value}")
    return parse_recover(value)


def test_the_last_position_of_each_topic_is_kept() -> None:
    positions = Positions()
    for frame in (event("room:1", 1, "e1"), event("room:2", 7, "e2"), event("room:1", 2, "e1")):
        positions.observe(frame)
    assert positions.copy() == {"room:1": Position(2, "e1"), "room:2": Position(7, "e2")}
    assert list(positions.copy()) == ["room:2", "room:1"]  # the most recent last


def test_events_without_a_whole_position_are_ignored() -> None:
    positions = Positions()
    for frame in (
        {"type": "msg", "topic": "room:1", "data": 1},  # a topic without history
        {"type": "pushed", "data": 1, "offset": 1, "epoch": "e"},  # no topic
        event("", 1, "e"),
        event(7, 1, "e"),
        event("room:1", True, "e"),
        event("room:1", -1, "e"),
        event("room:1", 2**53 + 1, "e"),
        event("room:1", 1.0, "e"),
        event("room:1", 1, ""),
        event("room:1", 1, "e" * 65),
        event("room:1", 1, None),
    ):
        positions.observe(frame)
    assert positions.copy() == {}
    assert positions.presented() is None


def test_a_recovery_event_moves_the_position_unless_it_has_none() -> None:
    positions = Positions({"room:1": (57, "old"), "room:2": (3, "e2")})
    positions.observe(recovery("room:1", 107, "old", True))
    assert positions.copy()["room:1"] == Position(107, "old")
    positions.observe(recovery("room:1", 4, "new", False))  # epoch_changed: start over
    assert positions.copy()["room:1"] == Position(4, "new")
    positions.observe(recovery("room:2", None, None, False))  # unavailable: keep it
    positions.observe({"type": "wsroute.recovery", "topic": "room:2", "data": "junk"})
    assert positions.copy() == {"room:1": Position(4, "new"), "room:2": Position(3, "e2")}


def test_seeds_are_checked_and_kept_in_order() -> None:
    seeded = Positions({"b": Position(1, "e"), "a": [2, "e"], "c": (0, "e")})  # type: ignore[dict-item]
    assert list(seeded.copy().items()) == [
        ("b", Position(1, "e")),
        ("a", Position(2, "e")),
        ("c", Position(0, "e")),
    ]
    for bad in ({"": (1, "e")}, {"a": (1, "")}, {"a": (-1, "e")}, {"a": 1}, {"a": (1, "e", 2)}):
        with pytest.raises(ValueError, match="position"):
            Positions(bad)  # type: ignore[arg-type]


def test_the_parameter_is_json_the_server_reads_back() -> None:
    odd = 'room:é & =+%"[]{},;#?/\\\n'
    positions = Positions({odd: (5, "k3JqbW1x"), "room:1": (2**53, "e" * 64)})
    presented = positions.presented()
    assert presented is not None and presented.left_out == 0
    assert set(presented.value) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%+-._~:,"
    )
    assert decoded(positions) == {odd: Position(5, "k3JqbW1x"), "room:1": Position(2**53, "e" * 64)}


def test_at_most_the_servers_limit_is_presented_the_most_recent_first() -> None:
    count = MAX_RECOVER_TOPICS + 10
    positions = Positions({f"t{n}": (n, "e") for n in range(count)})
    positions.observe(event("t0", 1000, "e"))  # updated: now the most recent
    presented = positions.presented()
    assert presented is not None and presented.left_out == 10
    expected = {f"t{n}": Position(n, "e") for n in range(11, count)} | {"t0": Position(1000, "e")}
    assert decoded(positions) == expected


def test_long_topics_are_presented_within_the_size_budget() -> None:
    long = {f"{n:04}:" + "x" * 1000: (n, "e") for n in range(20)}
    positions = Positions({"short": (1, "e"), **long, "huge": (1, "e" * 64)})
    positions.observe(event("y" * (MAX_PARAM + 1), 1, "e"))  # never fits, skipped
    presented = positions.presented()
    assert presented is not None and len(presented.value) <= MAX_PARAM
    kept = decoded(positions)
    assert presented.left_out == len(positions) - len(kept)
    assert "huge" in kept and "short" in kept  # older than what did not fit, but short
    newest = sorted(topic for topic in kept if topic in long)
    assert newest == sorted(long)[-len(newest) :] and 5 < len(newest) < 20


def test_the_least_recent_are_forgotten_past_the_bound() -> None:
    positions = Positions({f"t{n}": (n, "e") for n in range(MAX_KEPT)})
    positions.observe(event("new", 1, "e"))
    assert len(positions) == MAX_KEPT
    assert "t0" not in positions.copy() and "new" in positions.copy()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/", "ws://h/?wsroute.recover=V"),
        ("ws://h", "ws://h?wsroute.recover=V"),
        ("ws://h:1/p?a=1&b=x%20y+z&&c", "ws://h:1/p?a=1&b=x%20y+z&c&wsroute.recover=V"),
        (
            "wss://h/?wsroute.recover=old&a=1&wsroute%2Erecover=older",
            "wss://h/?a=1&wsroute.recover=V",
        ),
        ("ws://h/?token=t#frag", "ws://h/?token=t&wsroute.recover=V#frag"),
    ],
)
def test_the_parameter_joins_the_query_as_written(url: str, expected: str) -> None:
    assert with_param(url, "wsroute.recover", "V") == expected


def test_the_whole_url_parses_back() -> None:
    positions = Positions({"room:1": (57, "k3JqbW1x")})
    presented = positions.presented()
    assert presented is not None
    url = with_param("ws://h/ws?token=abc&room=a%26b", "wsroute.recover", presented.value)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["token"] == "abc" and query["room"] == "a&b"
    assert orjson.loads(query["wsroute.recover"]) == {"room:1": [57, "k3JqbW1x"]}


def test_a_forgotten_topic_is_not_presented() -> None:
    positions = Positions({"room:1": (3, "e"), "room:2": (4, "e")})
    assert positions.forget("room:1") is True
    assert positions.forget("room:1") is False
    assert decoded(positions) == {"room:2": Position(4, "e")}
