"""What an app declares about its API beyond its handlers, for its contracts.

A handler's payload and result types say what it takes and answers; two things they
cannot say are declared here: the error codes a route raises (``errors=`` of
``direct``/``broadcast``), and the events the app pushes by itself (``conn.send``,
``app.publish``, ``send_to_user``), declared with ``app.declare_event``. Neither
changes what the server does: ``wsroute asyncapi`` and ``wsroute typescript`` read
them (docs/contracts.md). Pure: checked at registration, naming the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ._errors import RegistrationError
from ._protocol import (
    BROKER_UNAVAILABLE,
    INTERNAL_ERROR,
    INVALID_DATA,
    INVALID_JSON,
    INVALID_MESSAGE,
    INVALID_MSGPACK,
    NO_PRESENCE,
    NOT_SUBSCRIBED,
    OVERLOADED,
    RATE_LIMITED,
    TIMEOUT,
    UNKNOWN_TYPE,
)

#: The protocol's own error codes (docs/protocol.md): an app cannot declare them.
PROTOCOL_ERRORS: Final[Mapping[str, str]] = {
    INVALID_JSON: "the frame is not valid JSON",
    INVALID_MSGPACK: "the binary frame is not one msgpack value JSON can say",
    INVALID_MESSAGE: "the frame is not a valid envelope",
    UNKNOWN_TYPE: "no handler is registered for the message type",
    INVALID_DATA: "data does not match the message type; details lists each problem",
    INTERNAL_ERROR: "the handler failed unexpectedly (logged on the server)",
    OVERLOADED: "the connection's request queue is full; retry later",
    BROKER_UNAVAILABLE: "the broker refused the event; nothing was published",
    RATE_LIMITED: "the connection sent more than the rate limit allows",
    TIMEOUT: "the handler ran longer than its timeout",
    NO_PRESENCE: "a presence request for a topic without presence",
    NOT_SUBSCRIBED: "a presence request for a topic the connection is not subscribed to",
}

#: ``errors=`` of a route: codes, or codes with what each means.
ErrorSpec = Mapping[str, str] | Iterable[str]

#: A parameter of a topic template: ``{room}`` in ``room:{room}``.
_PARAMETER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def check_errors(what: str, errors: ErrorSpec) -> Mapping[str, str]:
    """``errors=`` as ``{code: description}`` (``""`` where none was given)."""
    if isinstance(errors, str):
        raise RegistrationError(
            f"{what} errors must be a list of codes or a dict of code -> description,"
            f" not the string {errors!r}: write errors=[{errors!r}]"
        )
    if isinstance(errors, Mapping):
        items = list(errors.items())
    elif isinstance(errors, Iterable):
        items = [(code, "") for code in errors]
    else:
        raise RegistrationError(
            f"{what} errors must be a list of codes or a dict of code -> description"
        )
    checked: dict[str, str] = {}
    for code, description in items:
        if not isinstance(code, str) or not code:
            raise RegistrationError(f"{what} error code {code!r} must be a non-empty string")
        if code in PROTOCOL_ERRORS:
            raise RegistrationError(
                f"{what} error code {code!r} is the protocol's own (docs/protocol.md lists"
                " them); every route can answer it already: leave it out, or name yours"
                " differently"
            )
        if not isinstance(description, str):
            raise RegistrationError(f"{what} the description of {code!r} must be a string")
        checked[code] = description
    return checked


def template_parameters(topic: str) -> list[str]:
    """The parameters of a topic template, in order: ``room:{room}`` -> ``["room"]``."""
    return _PARAMETER.findall(topic)


@attrs.frozen
class EventInfo:
    """An event the app pushes by itself, as ``app.events`` lists it.

    Attributes:
        name: the event's ``type``.
        data_type: the type of its ``data`` (``None``: no data, ``Any``: any JSON).
        topic: the topic it is published to, a template such as ``room:{room}``
            whose ``{name}`` parts stand for any text; ``None`` for an event sent to
            connections (``conn.send``, ``send_to_user``, ``send_to_connection``).
        description: what it means; ``None`` for none.
    """

    name: str
    data_type: Any
    topic: str | None
    description: str | None


def check_event(
    name: str, data_type: Any, topic: object, description: object, known: Iterable[EventInfo]
) -> EventInfo:
    """A declared event, checked against the others (one per type and topic)."""
    what = f"event {name!r}:"
    if topic is not None:
        if not isinstance(topic, str) or not topic:
            raise RegistrationError(
                f"{what} topic must be a non-empty string (a template such as 'room:{{id}}')"
                " or None for an event sent to connections"
            )
        leftover = _PARAMETER.sub("", topic)
        if "{" in leftover or "}" in leftover:
            raise RegistrationError(
                f"{what} topic {topic!r}: a parameter is written {{name}}, with a name made"
                " of letters, digits and underscores"
            )
        parameters = template_parameters(topic)
        if len(set(parameters)) != len(parameters):
            raise RegistrationError(f"{what} topic {topic!r} names a parameter twice")
    if description is not None and not isinstance(description, str):
        raise RegistrationError(f"{what} description must be a string")
    for other in known:
        if other.name == name and other.topic == topic:
            where = f"on topic {topic!r}" if topic is not None else "to connections"
            raise RegistrationError(f"{what} already declared {where}; declare it once")
    return EventInfo(name, data_type, topic, description)
