"""Where the client stands in each topic's history, and how it tells the server.

Every event of a topic with history carries its ``offset`` and ``epoch``
(docs/history.md). The client keeps the last one per topic; a ``wsroute.recovery``
event moves it to where the topic stands now when it says so (a null ``offset``
means "keep yours": the server could not tell). On every connection attempt the
client presents what it keeps in the ``wsroute.recover`` query parameter, so that
the topics its replayed requests join again are recovered, what was missed first.

What fits is presented, the most recently updated topics first: at most the
server's ``MAX_RECOVER_TOPICS``, in at most ``MAX_PARAM`` characters, since the
whole request head must fit the server's 16 KiB. A topic left out is joined again
without recovery, and no ``wsroute.recovery`` event comes for it: the client warns.
Positions beyond ``MAX_KEPT`` topics are forgotten, the least recently updated first.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any, Final, NamedTuple
from urllib.parse import quote_plus, unquote_plus, urlsplit, urlunsplit

import orjson

from .._history import Position
from .._protocol import (
    MAX_EPOCH_LENGTH,
    MAX_RECOVER_TOPICS,
    MAX_SAFE_INTEGER,
    RECOVERY_TYPE,
)

#: The most characters of ``wsroute.recover``, encoded: three quarters of the server's
#: request head (16 KiB), the rest left to the path, other parameters and the headers
#: (a bearer token among them).
MAX_PARAM: Final = 12 * 1024
#: The most topics kept: more than are ever presented, fewer than memory minds.
MAX_KEPT: Final = 10 * MAX_RECOVER_TOPICS


class Presented(NamedTuple):
    """The ``wsroute.recover`` value for one connection attempt."""

    #: URL-encoded already: what follows ``wsroute.recover=``.
    value: str
    #: Topics kept but left out: more than fit.
    left_out: int


def is_position(offset: Any, epoch: Any) -> bool:
    """Whether the server takes ``(offset, epoch)`` as a position (``parse_recover``)."""
    return (
        type(offset) is int
        and 0 <= offset <= MAX_SAFE_INTEGER
        and isinstance(epoch, str)
        and 0 < len(epoch) <= MAX_EPOCH_LENGTH
    )


class Positions:
    """The last position seen per topic, the least recently updated first."""

    __slots__ = ("_kept",)

    def __init__(self, seed: Mapping[str, tuple[int, str]] | None = None) -> None:
        """Start from ``seed``, in its order (the last the most recent).

        Raises:
            ValueError: a topic is not a non-empty string, or a position is not
                ``(offset, epoch)``: an integer from 0 to 2^53 and a string of 1 to 64
                characters.
        """
        self._kept: dict[str, Position] = {}
        for topic, position in (seed or {}).items():
            if not isinstance(topic, str) or not topic:
                raise ValueError(f"a position's topic is a non-empty string, not {topic!r}")
            offset: Any = None
            epoch: Any = None
            with suppress(TypeError, ValueError):
                offset, epoch = position
            if not is_position(offset, epoch):
                raise ValueError(
                    f"the position of {topic!r} must be (offset, epoch): an integer from 0 to"
                    f" 2^53 and a string of 1 to {MAX_EPOCH_LENGTH} characters, not {position!r}"
                )
            self._kept[topic] = Position(offset, epoch)
        self._trim()

    def __len__(self) -> int:
        return len(self._kept)

    def copy(self) -> dict[str, Position]:
        return dict(self._kept)

    def forget(self, topic: str) -> bool:
        """Stop presenting ``topic``'s position; return whether there was one."""
        return self._kept.pop(topic, None) is not None

    def observe(self, frame: Mapping[str, Any]) -> None:
        """Note the position an event from the server gives its topic, if any."""
        topic = frame.get("topic")
        if not isinstance(topic, str) or not topic:
            return
        if frame.get("type") == RECOVERY_TYPE:
            data = frame.get("data")
            if isinstance(data, dict):
                self._move(topic, data.get("offset"), data.get("epoch"))
            return
        self._move(topic, frame.get("offset"), frame.get("epoch"))

    def _move(self, topic: str, offset: Any, epoch: Any) -> None:
        if is_position(offset, epoch):
            self._kept.pop(topic, None)  # to the end: the most recent
            self._kept[topic] = Position(offset, epoch)
            self._trim()

    def _trim(self) -> None:
        while len(self._kept) > MAX_KEPT:
            del self._kept[next(iter(self._kept))]

    def presented(self) -> Presented | None:
        """The ``wsroute.recover`` value to send, or ``None`` when nothing is kept."""
        if not self._kept:
            return None
        entries: list[str] = []
        size = 6  # the braces, encoded
        for topic, (offset, epoch) in reversed(self._kept.items()):
            entry = _quote(b"%s:[%d,%s]" % (orjson.dumps(topic), offset, orjson.dumps(epoch)))
            cost = len(entry) + (1 if entries else 0)  # and a comma
            if len(entries) == MAX_RECOVER_TOPICS:
                break
            if size + cost > MAX_PARAM:
                continue  # an older one may be shorter
            entries.append(entry)
            size += cost
        return Presented("%7B" + ",".join(entries) + "%7D", len(self._kept) - len(entries))


def _quote(text: bytes) -> str:
    # ``:`` and ``,`` may stand as they are in a query (RFC 3986), and JSON is full of them.
    return quote_plus(text, safe=":,")


def with_param(url: str, name: str, encoded: str) -> str:
    """``url`` with ``name=encoded`` added to its query, in place of any ``name`` it
    had; the rest of the query is kept as written."""
    parts = urlsplit(url)
    pairs = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) != name
    ]
    pairs.append(f"{quote_plus(name)}={encoded}")
    return urlunsplit(parts._replace(query="&".join(pairs)))
