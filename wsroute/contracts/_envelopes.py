"""The frames of protocol v1 as JSON Schemas, around a route's own data schemas.

docs/protocol.md in schema form: a request ``{type, id?, data?}``, a reply ``{type,
id?, ok: true, data}``, an error reply ``{type, id?, ok: false, error}``, an event
``{type, topic?, data, offset?, epoch?}``. The AsyncAPI document (``asyncapi.py``)
wraps every route's payload and result in them. Draft-07 keywords only, which AsyncAPI
3.0's schema format understands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .._protocol import ERROR_TYPE, MAX_ID_LENGTH, MAX_SAFE_INTEGER
from .._server import recovery

Schema = dict[str, Any]

#: Where the shared parts live in the document (``components.schemas``).
ID_REF: Final = "#/components/schemas/wsroute.Id"
ERROR_DETAILS_REF: Final = "#/components/schemas/wsroute.InvalidDataDetails"

#: ``components.schemas`` entries every document has.
SHARED: Final[Mapping[str, Schema]] = {
    "wsroute.Id": {
        "description": "The client's id of a request, echoed in its reply; never interpreted.",
        "oneOf": [
            {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
            {"type": "string", "maxLength": MAX_ID_LENGTH},
        ],
    },
    "wsroute.InvalidDataDetails": {
        "description": "The details of invalid_data: one entry per problem; path starts at $.",
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            "required": ["path", "message"],
            "additionalProperties": False,
        },
    },
}

#: The codes of an error reply whose request could not be read (``type: "error"``).
UNREADABLE: Final = ("invalid_json", "invalid_msgpack", "invalid_message", "rate_limited")
#: The codes of an error reply to a request of any type, handled or not: those
#: answered before a handler is looked up, and ``unknown_type``.
ANY_TYPE: Final = ("unknown_type", "invalid_message", "overloaded", "rate_limited")


def _const(value: str) -> Schema:
    return {"type": "string", "const": value}


def request(name: str, data: Schema | None, *, data_required: bool) -> Schema:
    """A client request of type ``name``; ``data`` ``None``: it takes none."""
    properties: Schema = {"type": _const(name), "id": {"$ref": ID_REF}}
    properties["data"] = (
        {"type": "null", "description": "this message type takes no data"} if data is None else data
    )
    required = ["type", "data"] if data_required else ["type"]
    return _object(properties, required)


def reply(name: str, data: Schema) -> Schema:
    """A successful reply to a request of type ``name``."""
    properties = {"type": _const(name), "id": {"$ref": ID_REF}, "ok": {"const": True}}
    return _object({**properties, "data": data}, ["type", "ok", "data"])


def error_reply(name: str | None, codes: Mapping[str, str], *, echoed: bool = True) -> Schema:
    """An error reply: to a request of type ``name``; to a request of any type
    (``name`` ``None``), whose type and id it echoes; or, not ``echoed``, to a frame
    whose type or id could not be read, with type ``"error"`` and no id.

    A route's codes are the protocol's and those it declares; since a handler may
    raise others, its list is open (``anyOf`` with any string). The others are closed.
    """
    known = [
        {"const": code, **({"description": text} if text else {})} for code, text in codes.items()
    ]
    code: Schema = {"type": "string"}
    if name is None:
        code["oneOf"] = known
    else:
        code["anyOf"] = [*known, {"description": "another code the handler raised"}]
    error = _object(
        {
            "code": code,
            "message": {"type": "string", "description": "for people; may change"},
            "details": {
                "description": "present when there is something to add; for invalid_data a"
                " list of {path, message}"
            },
        },
        ["code", "message"],
    )
    if not echoed:
        properties: Schema = {"type": _const(ERROR_TYPE)}
    else:
        properties = {"type": _const(name) if name is not None else {"type": "string"}}
        properties["id"] = {"$ref": ID_REF}
    properties.update({"ok": {"const": False}, "error": error})
    return _object(properties, ["type", "ok", "error"])


def event(name: str, data: Schema, topic: Schema | None) -> Schema:
    """An event of type ``name``: with ``topic`` a published one (and ``offset`` and
    ``epoch`` where its topic keeps history), else one pushed to a connection."""
    properties: Schema = {"type": _const(name)}
    if topic is not None:
        properties["topic"] = topic
    properties["data"] = data
    required = ["type", "data"]
    if topic is not None:
        required.insert(1, "topic")
        properties["offset"] = {
            "type": "integer",
            "minimum": 1,
            "description": "its position in the topic's history, where kept",
        }
        properties["epoch"] = {
            "type": "string",
            "description": "the run of the topic's history that offset counts in",
        }
    return _object(properties, required)


def _object(properties: Schema, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def presence_request(topic: Schema) -> Schema:
    """The data of ``wsroute.presence`` and ``wsroute.presence_stats``."""
    return _object({"topic": {**topic, "description": "a topic the connection is on"}})


# The data of the protocol's own messages (docs/presence.md, docs/history.md).

#: ``wsroute.presence``: one entry per connection; ``wsroute.join``/``leave``: one.
PRESENCE_ENTRY: Final = _object(
    {
        "connection": {"type": "string"},
        "user": {"type": ["string", "null"]},
        "meta": {"description": "what the app set as conn.presence_meta"},
    }
)
PRESENCE_STATS: Final = _object(
    {"connections": {"type": "integer", "minimum": 0}, "users": {"type": "integer", "minimum": 0}}
)
#: ``broker_state``, with ``App(broker_state_events=True)``.
BROKER_STATE: Final = _object({"state": {"type": "string", "enum": ["connected", "disconnected"]}})
#: ``wsroute.recovery``, which ends a topic's recovery (or catch-up).
RECOVERY: Final = _object(
    {
        "recovered": {"type": "boolean"},
        "offset": {"type": ["integer", "null"]},
        "epoch": {"type": ["string", "null"]},
        "missed": {"type": "integer", "minimum": 0},
        "reason": {
            "type": "string",
            "enum": [
                recovery.EPOCH_CHANGED,
                recovery.TOO_OLD,
                recovery.NO_HISTORY,
                recovery.UNKNOWN_OFFSET,
                recovery.UNAVAILABLE,
                recovery.BUSY,
                recovery.INTERRUPTED,
                recovery.BROKER_LOST,
            ],
        },
    },
    ["recovered", "offset", "epoch", "missed"],
)
