"""The app's AsyncAPI 3.0 document, made from its handler table.

The document describes the API from the client's side, as AsyncAPI's WebSocket
examples do: a client *sends* requests (one ``send`` operation per route, with its
``reply``) and *receives* events. Every message is a frame of protocol v1
(``_envelopes``) around a route's payload or result, whose schemas are
``components.schemas``. Topics are channels (``_channels``); how a client connects is
``_connect``. What the handler table cannot say comes from declarations (``errors=``,
``app.declare_event``) and goes in ``x-wsroute-...`` extensions: route options, the
subprotocols. docs/contracts.md is the user's guide.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Final

import orjson

from .._declared import PROTOCOL_ERRORS, EventInfo
from .._protocol import PRESENCE_STATS_TYPE, PRESENCE_TYPE, RECOVERY_TYPE
from .._routing import RouteInfo, RouteKind
from .._server.presence import JOIN_TYPE, LEAVE_TYPE
from .._signatures import describe
from . import _connect as connect
from . import _envelopes as envelopes
from ._channels import Channels, glob
from ._draft07 import Schema, lower, without_null
from ._source import AppSource, check_protocol, presence_events
from ._yaml import dumps as yaml_dumps
from .routes import AppSchemas, schemas_for

VERSION: Final = "3.0.0"
#: The channel of the WebSocket connection itself.
CONNECTION: Final = "connection"
_TO_CONNECTION: Final = {"$ref": f"#/channels/{CONNECTION}"}
#: Protocol codes a route's request can be answered with (the others concern frames
#: that could not be read, types without a handler, or presence requests).
_ROUTE_CODES: Final = (
    "invalid_message",
    "invalid_data",
    "internal_error",
    "overloaded",
    "rate_limited",
    "timeout",
)


def asyncapi(
    app: AppSource,
    *,
    title: str = "wsroute app",
    version: str = "0.1.0",
    server: str = "ws://localhost:8000/",
    overrides: Mapping[Any, Schema] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``app``, as JSON values.

    Args:
        title: ``info.title``.
        version: ``info.version``: the version of your API, not of wsroute.
        server: the URL clients connect to (``ws://`` or ``wss://``).
        overrides: schemas of types read by hooks of your own, as for
            :func:`wsroute.contracts.schemas_for`.

    Raises:
        SchemaError: a payload, result or event type has no exact JSON Schema.
        ValueError: ``server`` is not a ``ws://`` or ``wss://`` URL, or the app has a
            frame handler (it speaks no protocol v1).
    """
    check_protocol(app)
    found = schemas_for(
        app,
        ref_template="#/components/schemas/{name}",
        overrides=overrides,
    )
    return _Document(app, found, title, version, server).build()


def asyncapi_json(app: AppSource, **options: Any) -> bytes:
    """:func:`asyncapi` as indented JSON (what ``App(asyncapi=...)`` serves)."""
    return orjson.dumps(asyncapi(app, **options), option=orjson.OPT_INDENT_2) + b"\n"


def asyncapi_yaml(app: AppSource, **options: Any) -> str:
    """:func:`asyncapi` as block YAML."""
    return yaml_dumps(asyncapi(app, **options))


class _Document:
    """One document being made."""

    def __init__(
        self, app: AppSource, found: AppSchemas, title: str, version: str, server: str
    ) -> None:
        self.app = app
        self.found = found
        self.title, self.version, self.server = title, version, server
        self.parts = Channels()

    def build(self) -> dict[str, Any]:
        config = self.app.config
        server = connect.server(self.app, self.server)
        self.parts.add_channel(CONNECTION, connect.connection_channel(self.app))
        for key, codes, echoed, description in (
            (
                "wsroute.error",
                envelopes.UNREADABLE,
                False,
                'An error reply to a frame whose type or id could not be read: type "error",'
                " no id.",
            ),
            (
                "wsroute.any_error",
                envelopes.ANY_TYPE,
                True,
                "An error reply to a request of any type, its type and id echoed: one the"
                " app has no handler for, or one refused before its handler was looked up.",
            ),
        ):
            payload = envelopes.error_reply(
                None, {code: PROTOCOL_ERRORS[code] for code in codes}, echoed=echoed
            )
            message = self.parts.message(CONNECTION, key, payload, name="error")
            self.parts.receive(CONNECTION, message, description)
        declared = {(event.name, event.topic): event for event in self.app.events}
        for item in self.found.routes:
            self._route(item.route, lower(item.payload), lower(item.result), declared)
        for event in self.found.events:
            self._declared_event(event.event, lower(event.data))
        if config.broker_state_events:
            self.parts.pushed(
                CONNECTION,
                "broker_state",
                envelopes.BROKER_STATE,
                "The broker connection was lost or recovered (App(broker_state_events=True)):"
                " resynchronise on recovery.",
            )
        if config.presence:
            self._presence()
        if config.history:
            self._recovery()
        components: dict[str, Any] = {"schemas": {**envelopes.SHARED, **lower(self.found.defs)}}
        schemes = connect.security_schemes(self.app)
        if schemes:
            components["securitySchemes"] = schemes
        return {
            "asyncapi": VERSION,
            "info": connect.info(self.app, self.title, self.version),
            "defaultContentType": connect.JSON_TYPE,
            "servers": {"default": server},
            "channels": self.parts.channels,
            "operations": self.parts.operations,
            "components": components,
        }

    def _send(
        self,
        wanted: str,
        name: str,
        request: Schema,
        reply: Schema,
        codes: Mapping[str, str],
        *,
        description: str | None,
        reply_summary: str,
    ) -> dict[str, Any]:
        """A ``send`` operation: a request, its reply and its error reply."""
        messages = self.parts.message
        sent = messages(
            CONNECTION,
            f"{wanted}.request",
            request,
            name=name,
            summary=f"a {name} request",
            description=description,
        )
        answered = messages(CONNECTION, f"{wanted}.reply", reply, name=name, summary=reply_summary)
        error = messages(
            CONNECTION,
            f"{wanted}.error",
            envelopes.error_reply(name, codes),
            name=name,
            summary=f"an error reply to {name}",
        )
        operation: dict[str, Any] = {
            "action": "send",
            "channel": _TO_CONNECTION,
            "title": name,
            "messages": [sent],
            "reply": {"channel": _TO_CONNECTION, "messages": [answered, error]},
        }
        if description:
            operation["description"] = description
        self.parts.add_operation(wanted, operation)
        return operation

    def _route(
        self,
        route: RouteInfo,
        payload: Schema,
        result: Schema,
        declared: Mapping[tuple[str, str | None], EventInfo],
    ) -> None:
        both = sum(1 for other in self.app.handlers if other.name == route.name) > 1
        takes = route.payload_type is not None
        required = takes and not route.payload_default and not _admits_none(route.payload_type)
        codes = {**{code: PROTOCOL_ERRORS[code] for code in _ROUTE_CODES}, **route.errors}
        broadcast = route.kind is RouteKind.BROADCAST
        if broadcast:
            codes["broker_unavailable"] = PROTOCOL_ERRORS["broker_unavailable"]
        operation = self._send(
            f"{route.name}.{route.kind.value}" if both else route.name,
            route.name,
            envelopes.request(route.name, payload if takes else None, data_required=required),
            envelopes.reply(route.name, result),
            codes,
            description=connect.doc(route.fn),
            reply_summary=f"the {'acknowledgement' if broadcast else 'reply'} to {route.name}",
        )
        operation["x-wsroute-kind"] = route.kind.value
        operation.update(_options(route))
        if broadcast:
            operation["x-wsroute-publishes"] = self._broadcast_event(route, result, declared)

    def _broadcast_event(
        self, route: RouteInfo, result: Schema, declared: Mapping[tuple[str, str | None], EventInfo]
    ) -> str:
        """The event a broadcast publishes, on its topic's channel; returns the channel id."""
        topic = route.topic
        if isinstance(topic, str):
            channel = self.parts.topic(topic, literal=True)
        else:
            # A topic function's channel is its own, unless an event of the route's name
            # was declared with a template, which then names the topic.
            named = [e for (name, t), e in declared.items() if name == route.name and t]
            if named:
                assert named[0].topic is not None
                channel = self.parts.topic(named[0].topic, literal=False)
            else:
                channel = self.parts.function_topic(route)
        # The description: the handler's docstring, else a declaration's of the event.
        description = connect.doc(route.fn) or next(
            (e.description for (name, _), e in declared.items() if name == route.name), None
        )
        # Returning None publishes nothing: the event's data is never null for that.
        self.parts.topic_event(channel, route.name, without_null(result), description)
        return channel

    def _declared_event(self, event: EventInfo, data: Schema) -> None:
        if event.topic is None:
            self.parts.pushed(CONNECTION, event.name, data, event.description)
            return
        channel = self.parts.topic(event.topic, literal=False)
        names = {m["name"] for m in self.parts.channels[channel]["messages"].values()}
        if event.name not in names:  # the broadcast of this name already publishes it
            self.parts.topic_event(channel, event.name, data, event.description)

    def _presence(self) -> None:
        """The protocol's presence requests and, where enabled, join and leave events."""
        topics = {"type": "string", "pattern": glob(self.app.config.presence.patterns)}
        data = envelopes.presence_request(topics)
        codes = {code: PROTOCOL_ERRORS[code] for code in _ROUTE_CODES}
        codes.update({code: PROTOCOL_ERRORS[code] for code in ("no_presence", "not_subscribed")})
        entries = {"type": "array", "items": envelopes.PRESENCE_ENTRY}
        for name, result, text in (
            (PRESENCE_TYPE, entries, "Who is on a topic"),
            (PRESENCE_STATS_TYPE, envelopes.PRESENCE_STATS, "How many are on a topic"),
        ):
            self._send(
                name,
                name,
                envelopes.request(name, data, data_required=True),
                envelopes.reply(name, result),
                codes,
                description=f"{text} (App(presence=...), docs/presence.md).",
                reply_summary=f"the reply to {name}",
            )
        if presence_events(self.app):
            for name, did in ((JOIN_TYPE, "joined"), (LEAVE_TYPE, "left")):
                message = self.parts.message(
                    CONNECTION,
                    f"{name}.event",
                    envelopes.event(name, envelopes.PRESENCE_ENTRY, topics),
                    name=name,
                )
                self.parts.receive(CONNECTION, message, f"A connection {did} a topic.")

    def _recovery(self) -> None:
        message = self.parts.message(
            CONNECTION,
            f"{RECOVERY_TYPE}.event",
            envelopes.event(RECOVERY_TYPE, envelopes.RECOVERY, {"type": "string"}),
            name=RECOVERY_TYPE,
        )
        self.parts.receive(
            CONNECTION,
            message,
            "Ends a topic's recovery after a reconnect, or its catch-up after the server"
            " lost its broker (docs/history.md): recovered false asks the client to reload"
            " the topic's state.",
        )


def _admits_none(tp: Any) -> bool:
    """Whether ``None`` is a value of ``tp``, so that ``data`` may be left out."""
    if tp is Any or tp is None or tp is type(None):
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _admits_none(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_admits_none(arg) for arg in typing.get_args(tp))
    return False


def _options(route: RouteInfo) -> dict[str, Any]:
    """The route's options as ``x-wsroute-...`` extensions (docs/contracts.md)."""
    options: dict[str, Any] = {}
    if route.timeout is not None:
        options["x-wsroute-timeout"] = route.timeout
    if route.coalesce:
        options["x-wsroute-coalesce"] = True
        if route.coalesce_timeout is not None:
            options["x-wsroute-coalesce-timeout"] = route.coalesce_timeout
    if route.kind is RouteKind.BROADCAST:
        options["x-wsroute-exclude-sender"] = route.exclude_sender
        topic = route.topic
        if isinstance(topic, str):
            options["x-wsroute-topic"] = topic
        elif callable(topic):
            options["x-wsroute-topic"] = {"function": describe(topic)}
    if route.errors:
        options["x-wsroute-errors"] = dict(route.errors)
    return options
