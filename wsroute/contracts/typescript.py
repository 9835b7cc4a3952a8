"""TypeScript declarations of an app, for the JavaScript client's type parameters.

One interface per attrs class or dataclass, a union of literals per enum, and two
route maps: ``Requests`` (``{ get_item: { data: ItemRef; reply: Item } }``) and
``Events`` (event type -> data), which ``connect<Requests, Events>(url)`` of
``wsroute.d.ts`` takes, so that ``client.request("create_item", { nam: "x" })``
does not compile. Made from the same JSON Schemas as the AsyncAPI document
(``routes.schemas_for``), so both say the same; a keyword those schemas never use is
an error here rather than a type looser than the server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from .._declared import PROTOCOL_ERRORS
from .._errors import SchemaError
from .._routing import RouteKind
from ._draft07 import Schema, without_null
from ._source import AppSource, check_protocol, presence_events
from .routes import schemas_for

_REF_PREFIX: Final = "#/$defs/"
_IDENTIFIER: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
#: Names a declaration here must not take: the file's own, and TypeScript's types.
_TAKEN: Final = frozenset(
    {"Requests", "Events", "Bytes", "ErrorCode", "ProtocolErrorCode"}
    | {"any", "unknown", "never", "object", "string", "number", "boolean", "bigint"}
    | {"symbol", "null", "undefined", "void", "type", "interface", "enum", "this"}
)
#: Keywords that only constrain values a type already allows (or document them):
#: TypeScript has no word for them, and the type stands without them.
_CONSTRAINTS: Final = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
    | {"$comment", "pattern", "format", "minLength", "maxLength", "minimum", "maximum"}
    | {"exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems"}
    | {"uniqueItems", "minProperties", "maxProperties", "contentEncoding"}
    | {"contentMediaType", "propertyNames", "required"}
)
#: The data of the protocol's own events, where the app enables them.
_BROKER_STATE: Final = '{ state: "connected" | "disconnected" }'
_PRESENCE_ENTRY: Final = "{ connection: string; user: string | null; meta: unknown }"
#: The protocol's own requests where the app keeps presence (docs/presence.md).
_PRESENCE_REQUESTS: Final = {
    "wsroute.presence": ("{ topic: string }", f"{_PRESENCE_ENTRY}[]"),
    "wsroute.presence_stats": ("{ topic: string }", "{ connections: number; users: number }"),
}

HEADER: Final = """\
// TypeScript declarations of a wsroute app's API, made by `wsroute typescript`.
// Do not edit: generate them again when the app changes. Use them with the
// JavaScript client: `const client = connect<Requests, Events>(url);`
"""


def typescript(app: AppSource, *, overrides: Mapping[Any, Schema] | None = None) -> str:
    """The TypeScript declarations of ``app``'s types and route maps, as a module.

    Args:
        overrides: schemas of types read by hooks of your own, as for
            :func:`wsroute.contracts.schemas_for`.

    Raises:
        SchemaError: a payload, result or event type has no exact JSON Schema.
        ValueError: the app has a frame handler (it speaks no protocol v1).
    """
    check_protocol(app)
    found = schemas_for(app, overrides=overrides)
    names = _names(found.defs)
    writer = _Writer(names, binary="wsroute.v1.msgpack" in app.config.subprotocols)
    out = [HEADER]
    out.append(writer.bytes_alias())
    for name, schema in found.defs.items():
        out.append(writer.declaration(names[name], schema))
    requests: dict[str, list[tuple[str, str]]] = {}
    events: dict[str, list[str]] = {}
    for item in found.routes:
        route = item.route
        data = writer.type(item.payload)
        if route.payload_type is not None and route.payload_default:
            data = _union([data, "null"])
        requests.setdefault(route.name, []).append((data, writer.type(item.result)))
        if route.kind is RouteKind.BROADCAST:
            events.setdefault(route.name, []).append(writer.type(without_null(item.result)))
    if app.config.presence:  # no route can take a wsroute. name: no clash
        for name, spec in _PRESENCE_REQUESTS.items():
            requests[name] = [spec]
    for event in found.events:
        events.setdefault(event.event.name, []).append(writer.type(event.data))
    if app.config.broker_state_events:
        events.setdefault("broker_state", []).append(_BROKER_STATE)
    if presence_events(app):
        for name in ("wsroute.join", "wsroute.leave"):
            events.setdefault(name, []).append(_PRESENCE_ENTRY)
    out.append(_requests(requests))
    out.append(_map("Events", "Events by type: the type of each one's data.", events))
    codes = sorted({*PROTOCOL_ERRORS, *(c for r in app.handlers for c in r.errors)})
    out.append(
        "/** Every error code a reply may carry: the protocol's and those the routes declare"
        " (a handler may raise others). */\n"
        "export type ErrorCode =\n"
        + "".join(f"  | {json.dumps(code)}\n" for code in codes).rstrip("\n")
        + ";\n"
    )
    return "\n".join(out)


def _names(defs: Mapping[str, Schema]) -> dict[str, str]:
    """A TypeScript name for each entry of ``defs``: its own where it is one."""
    names: dict[str, str] = {}
    taken = set(_TAKEN)
    for name in defs:
        base = re.sub(r"[^A-Za-z0-9_$]", "_", name)
        if not _IDENTIFIER.fullmatch(base):
            base = f"_{base}"
        unique, n = base, 1
        while unique in taken:
            n += 1
            unique = f"{base}_{n}"
        taken.add(unique)
        names[name] = unique
    return names


def _requests(requests: Mapping[str, list[tuple[str, str]]]) -> str:
    lines = ["/** Requests by type: the data each one sends and the data of its reply. */"]
    lines.append("export interface Requests {")
    for name, specs in requests.items():
        # A type with a direct and a broadcast handler: the direct one's data, and
        # the reply of either (the broadcast answers when the direct returns null).
        data = specs[0][0]
        reply = _union([reply for _, reply in specs])
        lines.append(f"  {_key(name)}: {{ data: {data}; reply: {reply} }};")
    lines.append("}\n")
    return "\n".join(lines)


def _map(name: str, doc: str, entries: Mapping[str, list[str]]) -> str:
    lines = [f"/** {doc} */", f"export interface {name} {{"]
    for key, types in entries.items():
        lines.append(f"  {_key(key)}: {_union(types)};")
    lines.append("}\n")
    return "\n".join(lines)


def _key(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _union(types: list[str], sep: str = " | ") -> str:
    unique = list(dict.fromkeys(types))
    if "unknown" in unique:
        return "unknown"
    return sep.join(unique)


def _comment(text: str, indent: str = "") -> str:
    body = text.replace("*/", "*\\/").splitlines()
    if len(body) == 1:
        return f"{indent}/** {body[0]} */\n"
    lines = [f"{indent}/**"] + [f"{indent} *{' ' + line if line else ''}" for line in body]
    return "\n".join([*lines, f"{indent} */"]) + "\n"


class _Writer:
    """Turns the schemas of ``schema`` into TypeScript types."""

    def __init__(self, names: Mapping[str, str], *, binary: bool) -> None:
        self.names = names
        self.binary = binary

    def bytes_alias(self) -> str:
        if self.binary:
            return (
                "/** bytes: base64 text under JSON, a Uint8Array under msgpack (a client"
                " with a msgpack codec). */\nexport type Bytes = string | Uint8Array;\n"
            )
        return (
            "/** bytes: base64 text (the app speaks no msgpack). */\nexport type Bytes = string;\n"
        )

    def declaration(self, name: str, schema: Schema) -> str:
        doc = schema.get("description")
        head = _comment(doc) if isinstance(doc, str) and doc else ""
        properties = schema.get("properties")
        if schema.get("type") == "object" and isinstance(properties, dict):
            if schema.get("additionalProperties", True) is not False:
                raise SchemaError(f"{name}: a class whose schema allows extra keys")
            body = self._fields(schema, indent="  ")
            return f"{head}export interface {name} {{\n{body}}}\n"
        return f"{head}export type {name} = {self.type(schema)};\n"

    def _fields(self, schema: Schema, indent: str) -> str:
        required = set(schema.get("required", ()))
        out = []
        for field, sub in schema["properties"].items():
            optional = "" if field in required else "?"
            out.append(f"{indent}{_key(field)}{optional}: {self.type(sub)};\n")
        return "".join(out)

    def type(self, schema: Any) -> str:
        if schema is True or schema == {}:
            return "unknown"
        if not isinstance(schema, dict):
            raise SchemaError(f"no TypeScript type for the schema {schema!r}")
        unknown = set(schema) - _CONSTRAINTS - {
            "$ref", "const", "enum", "anyOf", "type", "items", "prefixItems",
            "properties", "additionalProperties",
        }  # fmt: skip
        if unknown:
            raise SchemaError(
                f"no TypeScript type for the schema keyword(s) {', '.join(sorted(unknown))}"
            )
        ref = schema.get("$ref")
        if ref is not None:
            return self.names[ref.removeprefix(_REF_PREFIX)]
        if "const" in schema:
            return json.dumps(schema["const"])
        if "enum" in schema:
            return _union([json.dumps(value) for value in schema["enum"]])
        if "anyOf" in schema:
            return _union([self._member(member) for member in schema["anyOf"]])
        kind = schema.get("type")
        if kind == "null":
            return "null"
        if kind == "boolean":
            return "boolean"
        if kind in ("integer", "number"):
            return "number"
        if kind == "string":
            return "Bytes" if schema.get("contentEncoding") == "base64" else "string"
        if kind == "array":
            return self._array(schema)
        if kind == "object":
            return self._object(schema)
        raise SchemaError(f"no TypeScript type for the schema {schema!r}")

    def _member(self, schema: Any) -> str:
        text = self.type(schema)
        return f"({text})" if "=>" in text else text

    def _array(self, schema: Schema) -> str:
        if "prefixItems" in schema:
            items = [self.type(item) for item in schema["prefixItems"]]
            rest = schema.get("items", True)
            if rest is not False:
                items.append(f"...{self._element(rest)}[]")
            return f"[{', '.join(items)}]"
        if schema.get("maxItems") == 0:
            return "[]"
        return f"{self._element(schema.get('items', True))}[]"

    def _element(self, schema: Any) -> str:
        text = self.type(schema)
        return f"({text})" if " " in text and not text.startswith("{") else text

    def _object(self, schema: Schema) -> str:
        if isinstance(schema.get("properties"), dict):
            body = self._fields(schema, indent="")
            return "{ " + " ".join(body.splitlines()) + " }" if body else "{}"
        values = schema.get("additionalProperties", True)
        return f"{{ [key: string]: {self.type(values)} }}"
