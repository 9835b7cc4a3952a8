"""The schemas of an app's whole API: every route's payload and result, every
declared event's data, sharing one ``$defs``.

This is what ``wsroute asyncapi`` and ``wsroute typescript`` are made from, and
what other tools can call: :func:`schemas_for` reads the handler table and the
app's converter, and fails on the first type that has no exact schema, naming the
route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import cattrs

from .._declared import EventInfo
from .._routing import RouteInfo, RouteKind
from .schema import DIALECT, schema_set

__all__ = ["AppSchemas", "EventSchema", "RouteSchema", "RouteTable", "schemas_for"]


class RouteTable(Protocol):
    """What :func:`schemas_for` reads of an app: a :class:`wsroute.App` is one."""

    @property
    def converter(self) -> cattrs.Converter: ...

    @property
    def handlers(self) -> list[RouteInfo]: ...

    @property
    def events(self) -> list[EventInfo]: ...


@attrs.frozen
class RouteSchema:
    """The schemas of one route.

    Attributes:
        route: the route, as ``app.handlers`` lists it.
        payload: the schema of the request's ``data``: ``{"type": "null"}`` when
            the handler takes no payload, ``{}`` (anything) for ``Any``.
        result: the schema of the reply's ``data`` (direct) or of the event's
            ``data`` (broadcast); ``{"type": "null"}`` for ``-> None``, ``{}``
            when the handler has no return annotation or returns ``Any``.
    """

    route: RouteInfo
    payload: dict[str, Any]
    result: dict[str, Any]


@attrs.frozen
class EventSchema:
    """The schema of a declared event's ``data`` (``app.declare_event``)."""

    event: EventInfo
    data: dict[str, Any]


@attrs.frozen
class AppSchemas:
    """The schemas of an app's routes and events.

    Attributes:
        routes: one per route, in ``app.handlers`` order.
        events: one per declared event, in ``app.events`` order.
        defs: the schema of every class and enum they name, by name.
        names: the name in ``defs`` of each class and enum (for generated code).
    """

    routes: tuple[RouteSchema, ...]
    events: tuple[EventSchema, ...]
    defs: dict[str, dict[str, Any]]
    names: dict[type, str]

    def document(self) -> dict[str, Any]:
        """Everything as one JSON Schema document, its ``$defs`` holding each class
        and enum by name, and each route's and event's schema under a key no class
        name has: ``route:NAME:payload``, ``route:NAME:reply`` (direct) or
        ``route:NAME:event`` (broadcast), ``event:NAME:data`` (or
        ``event:NAME@TOPIC:data`` for an event declared on a topic). Refer to one
        with ``{"$ref": "#/$defs/route:NAME:payload"}`` (``/`` in a name written
        ``~1``, as JSON Pointer has it).

        Its refs are ``#/$defs/{name}``: make the :class:`AppSchemas` with the
        default ``ref_template``.
        """
        defs = dict(self.defs)
        for item in self.routes:
            result = "reply" if item.route.kind is RouteKind.DIRECT else "event"
            defs[f"route:{item.route.name}:payload"] = item.payload
            defs[f"route:{item.route.name}:{result}"] = item.result
        for event in self.events:
            topic = "" if event.event.topic is None else f"@{event.event.topic}"
            defs[f"event:{event.event.name}{topic}:data"] = event.data
        return {"$schema": DIALECT, "$defs": defs}


def schemas_for(
    app: RouteTable,
    *,
    ref_template: str = "#/$defs/{name}",
    overrides: Mapping[Any, dict[str, Any]] | None = None,
) -> AppSchemas:
    """The schemas of ``app``'s routes and declared events, read with its converter.

    Args:
        app: the app, with its handlers registered.
        ref_template: how a ``$ref`` is written; ``{name}`` is the entry's name in
            ``defs`` (AsyncAPI: ``"#/components/schemas/{name}"``).
        overrides: a schema for each type the app's converter reads with a hook of
            the app's own, used as given.

    Raises:
        SchemaError: a type has no exact schema; the message names the route.
    """
    routes = app.handlers
    events = app.events
    types: list[tuple[str, Any]] = []
    for route in routes:
        what = f"{route.kind.value} route {route.name!r}"
        result = "reply" if route.kind is RouteKind.DIRECT else "event"
        types.append((f"{what} payload", route.payload_type))
        types.append((f"{what} {result}", route.result_type))
    for event in events:
        types.append((f"event {event.name!r} data", event.data_type))
    found = schema_set(
        types, converter=app.converter, ref_template=ref_template, overrides=overrides
    )
    schemas = iter(found.schemas)
    return AppSchemas(
        routes=tuple(RouteSchema(route, next(schemas), next(schemas)) for route in routes),
        events=tuple(EventSchema(event, next(schemas)) for event in events),
        defs=found.defs,
        names=found.names,
    )
