"""The channels and operations of an AsyncAPI document as it is made: unique ids,
messages added to channels, topics as channels.

AsyncAPI allows only ``[A-Za-z0-9_.-]`` in the keys of channels, operations and
messages, while message types and topics may hold any text: keys are made from them,
and the real names stay in each message's ``name`` and payload. A topic is a channel
whose address is the topic; a template (``room:{room}``) is a channel with
parameters; a topic a function picks is a channel ``{topic}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from .._declared import template_parameters
from .._routing import RouteInfo
from .._signatures import describe
from . import _envelopes as envelopes
from ._connect import doc
from ._draft07 import Schema

_NOT_IN_KEYS: Final = re.compile(r"[^A-Za-z0-9_.-]")
_PARAMETER: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
#: Characters escaped in a regular expression: the same in ECMA-262 (also with its
#: ``u`` flag, which refuses other escapes such as ``re.escape``'s ``\&``) and ``re``.
_SPECIAL: Final = frozenset("\\^$.*+?()[]{}|/")
_ANY_TEXT: Final = r"[\s\S]*"


def _escape(text: str) -> str:
    return "".join(f"\\{char}" if char in _SPECIAL else char for char in text)


def glob(patterns: Iterable[str]) -> str:
    """A regular expression of the topics matching one of ``patterns`` (``*``: any
    text, as ``App(presence=...)`` reads them)."""
    alternatives = [_ANY_TEXT.join(_escape(part) for part in p.split("*")) for p in patterns]
    return "^(?:" + "|".join(alternatives) + ")$"


def _key(wanted: str, taken: Iterable[str]) -> str:
    """A key made of ``wanted`` that is not ``taken``: ``room:{id}`` -> ``room.id``."""
    readable = wanted.replace("{", "").replace("}", "").replace(":", ".").replace("/", ".")
    base = _NOT_IN_KEYS.sub("_", readable)[:200] or "_"
    taken = set(taken)
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}-{n}"
    return key


class Channels:
    """The channels and operations of one document."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self._topics: dict[tuple[str, bool], str] = {}  # (topic, literal) -> channel id

    def add_channel(self, wanted: str, channel: dict[str, Any]) -> str:
        key = _key(wanted, self.channels)
        self.channels[key] = channel
        return key

    def add_operation(self, wanted: str, operation: dict[str, Any]) -> str:
        key = _key(wanted, self.operations)
        self.operations[key] = operation
        return key

    def message(
        self,
        channel: str,
        wanted: str,
        payload: Schema,
        *,
        name: str,
        summary: str | None = None,
        description: str | None = None,
    ) -> dict[str, str]:
        """Add a message of type ``name`` to ``channel``; returns a ref to it."""
        messages = self.channels[channel]["messages"]
        key = _key(wanted, messages)
        message: dict[str, Any] = {"name": name, "payload": payload}
        if summary:
            message["summary"] = summary
        if description:
            message["description"] = description
        messages[key] = message
        return {"$ref": f"#/channels/{channel}/messages/{key}"}

    def receive(self, channel: str, message: dict[str, str], description: str) -> None:
        """An operation receiving ``message`` (a ref) on ``channel``."""
        key = message["$ref"].rpartition("/")[2]
        self.add_operation(
            f"receive.{key}.{channel}",
            {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [message],
                "description": description,
            },
        )

    def topic(self, topic: str, *, literal: bool) -> str:
        """The channel of a topic, or of a template when not ``literal``; its id."""
        known = self._topics.get((topic, literal))
        if known is not None:
            return known
        parameters = [] if literal else template_parameters(topic)
        channel: dict[str, Any] = {"address": topic, "messages": {}}
        if literal and "{" in topic:
            # Braces in an address mark parameters: such a topic has no address.
            channel["address"] = None
            channel["description"] = f"The topic {topic!r}."
            channel["x-wsroute-topic"] = topic
        elif parameters:
            channel["description"] = f"The topics {topic}, where each {{name}} is any text."
            channel["parameters"] = {
                name: {"description": f"this part of the topic {topic}"} for name in parameters
            }
        else:
            channel["description"] = f"The topic {topic}."
        key = self.add_channel(f"topic.{topic}", channel)
        self._topics[(topic, literal)] = key
        return key

    def function_topic(self, route: RouteInfo) -> str:
        """The channel of the topics a broadcast's topic function picks; its id."""
        fn = route.topic
        assert callable(fn)
        text = doc(fn)
        return self.add_channel(
            f"topic.{route.name}",
            {
                "address": "{topic}",
                "description": f"The topic {describe(fn)} picks for each {route.name} message"
                + (f": {text}" if text else ".")
                + " Declare the event with a topic template to name it"
                ' (app.declare_event(name, type, topic="room:{room}")).',
                "parameters": {"topic": {"description": f"the topic {describe(fn)} returns"}},
                "messages": {},
                "x-wsroute-topic-function": describe(fn),
            },
        )

    def topic_event(self, channel: str, name: str, data: Schema, description: str | None) -> None:
        """The event ``name`` published on a topic channel, and its receive operation."""
        found = self.channels[channel]
        address = found["address"]
        topic: Schema = {"type": "string"}
        if address is None:  # a literal topic with braces
            topic["const"] = found["x-wsroute-topic"]
        elif not template_parameters(address):
            topic["const"] = address
        elif "x-wsroute-topic-function" not in found:  # a template: anything per parameter
            parts = _PARAMETER.split(address)
            topic["pattern"] = "^" + _ANY_TEXT.join(_escape(part) for part in parts) + "$"
        message = self.message(
            channel,
            name,
            envelopes.event(name, data, topic),
            name=name,
            description=description,
        )
        self.receive(channel, message, description or f"The {name} event.")

    def pushed(self, channel: str, name: str, data: Schema, description: str | None) -> None:
        """An event pushed to one connection (``conn.send``, ``send_to_user``, ...)."""
        message = self.message(
            channel,
            f"{name}.event",
            envelopes.event(name, data, None),
            name=name,
            description=description,
        )
        self.receive(channel, message, description or f"The {name} event.")
