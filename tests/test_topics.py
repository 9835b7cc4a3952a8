"""Topic patterns (``wsroute._topics``): ``*`` matches any run of characters, nothing
else is special, and the first pattern that matches decides."""

from __future__ import annotations

import pytest

from wsroute._topics import TopicRules, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("room:*", "room:1", True),
        ("room:*", "room:", True),
        ("room:*", "room:a:b", True),
        ("room:*", "rooms:1", False),
        ("room:*", "xroom:1", False),
        ("*:log", "a:b:log", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "aXbY", False),
        ("exact", "exact", True),
        ("exact", "exactly", False),
        ("room.?[1]", "room.?[1]", True),  # regex characters are literal
        ("room.?[1]", "roomX1", False),
        ("*", "anything\nat all", True),
    ],
)
def test_a_star_matches_any_run_of_characters(pattern: str, topic: str, matches: bool) -> None:
    assert bool(compile_pattern(pattern).fullmatch(topic)) is matches


def test_the_first_matching_pattern_decides() -> None:
    rules = TopicRules({"room:vip*": "vip", "room:*": "room", "*": "any"})
    assert rules.get("room:vip1") == "vip"
    assert rules.get("room:2") == "room"
    assert rules.get("lobby") == "any"
    assert rules.patterns == ("room:vip*", "room:*", "*")


def test_no_rules_match_nothing() -> None:
    rules: TopicRules[int] = TopicRules(())
    assert not rules and rules.get("x") is None
    assert TopicRules([("a", 1)]) and TopicRules([("a", 1)]).get("a") == 1


@pytest.mark.parametrize("bad", ["", None, 3])
def test_a_pattern_is_a_non_empty_string(bad: object) -> None:
    with pytest.raises(ValueError, match="a topic pattern is a non-empty string"):
        TopicRules({bad: 1})  # type: ignore[dict-item]
