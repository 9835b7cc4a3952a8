"""What ``wsroute routes`` prints: the app's handler table, for people or for tools.

A table to scan (types without their module, ``-`` for none), or the same as a JSON
document (``--format json``). Below it, the paths plain GETs are answered at (the
app's GET routes and static files, the JavaScript client, the probes...: the rest of
what the port serves), and what clients may speak: subprotocols and compression shape
every message as much as the handlers do.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from ._app import App
from ._config import Config
from ._routing import RouteInfo
from ._signatures import describe


def table(app: App) -> str:
    """The handler table, then the plain GET paths, then the subprotocols and
    compression, a blank line between them."""
    rows = [("TYPE", "KIND", "PAYLOAD", "RESULT", "TOPIC")]
    rows += [_row(handler) for handler in app.handlers]
    parts = [_table(rows)]
    if app.http_routes:
        parts.append(_table([("GET PATH", "ANSWERED BY"), *app.http_routes]))
    parts.append(_table(_formats(app.config)))
    return "\n\n".join(parts)


def document(app: App) -> dict[str, Any]:
    """What ``wsroute routes --format json`` prints: the table's content, for tools.

    Types are written as in the table (``list[Item]``); ``null`` where the table
    shows ``-``.
    """
    deflate = app.config.compression
    return {
        "handlers": [_handler_document(handler) for handler in app.handlers],
        "http": [{"path": path, "answered_by": what} for path, what in app.http_routes],
        "subprotocols": list(app.config.subprotocols),
        "require_subprotocol": app.config.require_subprotocol,
        "compression": None if deflate is None else dataclasses.asdict(deflate),
    }


def _handler_document(handler: RouteInfo) -> dict[str, Any]:
    topic = handler.topic
    return {
        "type": handler.name,
        "kind": handler.kind.value,
        "payload": _or_null(format_type(handler.payload_type)),
        "result": _or_null(format_type(handler.result_type)),
        "topic": topic if isinstance(topic, str) else None,
        "topic_function": None if topic is None or isinstance(topic, str) else describe(topic),
        "timeout": handler.timeout,
        "coalesce": handler.coalesce,
        "exclude_sender": handler.exclude_sender,
    }


def _or_null(shown: str) -> str | None:
    return None if shown == "-" else shown


def _formats(config: Config) -> list[tuple[str, str]]:
    """What a client may speak: the subprotocols (msgpack among them, by default) and
    compression, which shape every message as much as the handlers do."""
    offered = ", ".join(config.subprotocols) or "-"
    if config.subprotocols and not config.require_subprotocol:
        offered += " (or none: JSON)"
    deflate = config.compression
    if deflate is None:
        compression = "off"
    else:
        kept = {True: "kept", False: "none"}
        compression = (
            f"permessage-deflate (from {deflate.threshold} bytes, level {deflate.level}, "
            f"server context {kept[deflate.server_context_takeover]}, "
            f"client context {kept[deflate.client_context_takeover]})"
        )
    return [("SUBPROTOCOLS", offered), ("COMPRESSION", compression)]


def _row(handler: RouteInfo) -> tuple[str, str, str, str, str]:
    topic = handler.topic
    if topic is None:
        shown = "-"
    elif isinstance(topic, str):
        shown = topic
    else:
        shown = f"<fn {describe(topic)}>"
    return (
        handler.name,
        handler.kind.value,
        format_type(handler.payload_type),
        format_type(handler.result_type),
        shown,
    )


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_type(tp: Any) -> str:
    """A type as a reader writes it: ``list[Item]``, ``Item | None``, ``Any``; ``-`` for none.

    Module prefixes are dropped: the table is for scanning, and the handler's module
    is where the reader looks the names up.
    """
    if tp is None:
        return "-"
    if tp is Any:
        return "Any"
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if isinstance(tp, list):  # the parameter list of Callable[[...], R]
        return f"[{', '.join(format_type(arg) for arg in tp)}]"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return format_type(args[0])
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(format_type(arg) for arg in args)
    if origin is not None and args:
        return f"{format_type(origin)}[{', '.join(format_type(arg) for arg in args)}]"
    if isinstance(tp, type):
        return tp.__name__
    return re.sub(r"\b(?:\w+\.)+", "", repr(tp)).removeprefix("~")
