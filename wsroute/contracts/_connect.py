"""How a client connects, in AsyncAPI terms: ``info``, the server, its security
schemes and the connection channel's WebSocket binding.

Read from the app's options and its accept hook. A hook made by ``bearer_auth`` is
known (``_server.admission.bearer_scheme``) and becomes security schemes; what any
other hook checks cannot be known from outside it, so it is named, not guessed.
"""

from __future__ import annotations

import inspect
from typing import Any, Final
from urllib.parse import urlsplit

from .._server.admission import bearer_scheme
from .._signatures import describe
from ._source import AppSource

JSON_TYPE: Final = "application/json"
MSGPACK_TYPE: Final = "application/msgpack"
#: The media type of each subprotocol of protocol v1; an app's own speak JSON.
FORMATS: Final = {"wsroute.v1.json": JSON_TYPE, "wsroute.v1.msgpack": MSGPACK_TYPE}
#: The version of AsyncAPI's WebSocket bindings.
WS_BINDING: Final = "0.1.0"


def doc(obj: object) -> str | None:
    """A docstring, cleaned; ``None`` for none."""
    return inspect.getdoc(obj) or None


def info(app: AppSource, title: str, version: str) -> dict[str, Any]:
    lines = [
        "A wsroute app speaking wsroute's protocol v1 (its docs/protocol.md): every message"
        " is one JSON object {type, id?, data?} in a text frame, or one msgpack map in a"
        " binary frame under the subprotocol wsroute.v1.msgpack.",
        "This document describes the API from the client's side: `send` operations are"
        " requests a client sends, each with its reply; `receive` operations are events it"
        " receives.",
    ]
    if app.config.max_concurrency > 1:
        lines.append(
            f"Up to {app.config.max_concurrency} requests of a connection run at once:"
            " match replies by id."
        )
    return {
        "title": title,
        "version": version,
        "description": "\n\n".join(lines),
        "x-wsroute-protocol": "v1",
    }


def server(app: AppSource, url: str) -> dict[str, Any]:
    """The server clients connect to at ``url``.

    Raises:
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(
            f"server {url!r}: give the URL clients connect to, ws:// or wss://, e.g."
            " wss://api.example.com/ws"
        )
    config = app.config
    formats = {name: FORMATS.get(name, JSON_TYPE) for name in config.subprotocols}
    found: dict[str, Any] = {
        "host": parts.netloc,
        "protocol": parts.scheme,
        "pathname": parts.path or "/",
        "description": "Accepts WebSocket upgrades on any path.",
        "x-wsroute-subprotocols": formats,
        "x-wsroute-require-subprotocol": config.require_subprotocol,
    }
    if MSGPACK_TYPE in formats.values():
        found["description"] += (
            " A client that offers the subprotocol wsroute.v1.msgpack speaks msgpack"
            " (application/msgpack, binary frames): the same messages, with bytes as"
            " binary instead of base64 text."
        )
    hook = app.accept_hook
    schemes = security_schemes(app)
    if schemes:
        found["security"] = [{"$ref": f"#/components/securitySchemes/{name}"} for name in schemes]
    elif hook is not None:
        found["x-wsroute-accept-hook"] = describe(hook)
        text = doc(hook)
        found["description"] += f" Each upgrade is checked by the accept hook {describe(hook)}"
        found["description"] += f": {text}" if text else "."
    return found


def security_schemes(app: AppSource) -> dict[str, Any]:
    """The schemes of a ``bearer_auth`` hook, of which a client uses one; else none."""
    hook = app.accept_hook
    scheme = bearer_scheme(hook) if hook is not None else None
    if scheme is None:
        return {}
    schemes: dict[str, Any] = {
        "bearerHeader": {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer <token> on the upgrade request; a missing"
            " or refused token is answered 401.",
        }
    }
    if scheme.query_param is not None:
        schemes["bearerQuery"] = {
            "type": "httpApiKey",
            "in": "query",
            "name": scheme.query_param,
            "description": "The token as a query parameter, for browsers, which cannot set"
            " headers on a WebSocket.",
        }
    return schemes


def connection_channel(app: AppSource) -> dict[str, Any]:
    """The channel of the WebSocket connection, without messages yet."""
    config = app.config
    hook = app.accept_hook
    scheme = bearer_scheme(hook) if hook is not None else None
    query: dict[str, Any] = {}
    if scheme is not None and scheme.query_param is not None:
        query[scheme.query_param] = {"type": "string", "description": "a bearer token"}
    if config.history:
        query["wsroute.recover"] = {
            "type": "string",
            "description": 'The last position seen per topic, JSON {"topic": [offset, "epoch"]},'
            " so that the server sends what was missed.",
        }
    offered = ", ".join(config.subprotocols)
    headers: dict[str, Any] = {
        "Sec-WebSocket-Protocol": {
            "type": "string",
            "description": f"the subprotocols offered; the server selects the first of"
            f" {offered} that is offered",
        }
    }
    if scheme is not None:
        headers["Authorization"] = {"type": "string", "pattern": "^[Bb]earer .+"}
    binding: dict[str, Any] = {
        "method": "GET",
        "headers": {"type": "object", "properties": headers},
        "bindingVersion": WS_BINDING,
    }
    if query:
        binding["query"] = {"type": "object", "properties": query}
    return {
        "address": "/",
        "title": "The WebSocket connection",
        "description": "Requests, replies, and events pushed to this connection alone.",
        "messages": {},
        "bindings": {"ws": binding},
    }
