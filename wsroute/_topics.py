"""Topic patterns: which options apply to which topics (``App(history={"room:*": ...})``).

A pattern is a topic name in which ``*`` stands for any run of characters,
``:`` included; nothing else is special. The first pattern that matches, in the
order given, decides. Lookups are cached: a process looks up the same few topics
on every publish.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Generic, TypeVar

T = TypeVar("T")

#: Topics whose answer is remembered (they recur: a process hosts a working set).
_CACHED = 4096


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` as a regular expression that matches whole topics.

    Raises:
        ValueError: ``pattern`` is not a non-empty string.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"a topic pattern is a non-empty string, not {pattern!r}")
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


class TopicRules(Generic[T]):
    """Values chosen by topic pattern; ``rules.get(topic)`` is the first match's."""

    __slots__ = ("_lookup", "patterns")

    def __init__(self, rules: Mapping[str, T] | Iterable[tuple[str, T]]) -> None:
        items = list(rules.items() if isinstance(rules, Mapping) else rules)
        compiled = [(compile_pattern(pattern), value) for pattern, value in items]
        #: The patterns, in the order they are tried.
        self.patterns = tuple(pattern for pattern, _ in items)

        @lru_cache(maxsize=_CACHED)
        def lookup(topic: str) -> T | None:
            found: T | None = None
            for regex, value in compiled:
                if regex.fullmatch(topic):
                    found = value
                    break
            return found

        self._lookup: Callable[[str], T | None] = lookup

    def get(self, topic: str) -> T | None:
        """The value of the first pattern ``topic`` matches, or ``None``."""
        return self._lookup(topic)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"TopicRules({list(self.patterns)!r})"
