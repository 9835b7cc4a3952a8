"""wsroute's exceptions: one tree, rooted at :class:`WsrouteError`.

::

    WsrouteError
    ├── RegistrationError      a handler or option is wrong; raised at decoration time
    ├── SchemaError            a type has no exact JSON Schema (``wsroute.contracts``)
    ├── HandlerError           raised by app code; becomes an error reply with its code
    ├── Reject                 raised by an accept hook; refuses the upgrade with an HTTP status
    ├── ProtocolError          a client frame breaks the wire protocol (invalid_json, ...)
    ├── ConnectionClosed       sending on, or subscribing, a connection that is closing
    ├── NotRunningError        app.publish / app.start_soon while the app is not serving
    ├── AlreadyRunningError    serving an App that is serving already
    ├── BrokerError            the broker failed
    │   ├── BrokerClosed       the broker session was closed
    │   ├── HistoryUnsupported the broker keeps no history, or the topic has none
    │   └── PresenceUnsupported the broker keeps no presence, or the topic has none
    ├── LoadError              ``wsroute run MODULE:ATTR`` could not load the app
    ├── ListenError            the server could not listen on its address (also an OSError)
    └── ClientError            raised by the Python client (``wsroute.client``)
        ├── ClientHandlerError the server answered a request with an error reply
        ├── RequestTimeout     no reply within the request's timeout
        ├── Disconnected       the connection dropped while the request was pending
        │   └── ClientClosed   the client is closed for good (by you, or it gave up)
        ├── ConnectError       the client could not connect (refused, unreachable)
        ├── InvalidReply       a reply's data does not match the requested type
        └── EventsLost         an event stream overflowed under the "error" policy

"The client sent something bad" (ProtocolError, HandlerError) is kept apart from
"we failed" (everything else): only the first kind is answered with a specific code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._wire.headers import is_field_value, is_token


class WsrouteError(Exception):
    """Base class of every exception wsroute raises."""


class RegistrationError(WsrouteError, TypeError):
    """A handler, hook or option cannot be registered; the message names the fix."""


class SchemaError(WsrouteError, TypeError):
    """A type has no JSON Schema as strict as the converter that reads it, or the
    converter cannot read it; the message names the type, where it is used and the fix."""


class HandlerError(WsrouteError):
    """Raise in a handler to answer the request with an error reply.

    Args:
        code: a stable, machine-readable code such as ``"not_found"``.
        message: a human-readable explanation, sent to the client.
        details: optional JSON-serialisable extra information.
    """

    def __init__(self, code: str, message: str = "", details: Any = None) -> None:
        if not isinstance(code, str) or not code:
            raise TypeError("HandlerError code must be a non-empty string")
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"HandlerError({self.code!r}, {self.message!r}, details={self.details!r})"


class Reject(WsrouteError):
    """Raise in an accept hook to refuse the WebSocket upgrade.

    The client gets an HTTP response with ``status`` and ``message`` as a plain-text
    body; the connection never exists, so no other hook runs.

    Args:
        status: the HTTP status, 400-599 (e.g. 401, 403, 429, 503).
        message: the response body, sent to the client.
        headers: extra response headers, e.g. ``{"WWW-Authenticate": "Bearer"}``.
    """

    def __init__(
        self,
        status: int,
        message: str = "",
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> None:
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"Reject status must be an HTTP error status 400-599, not {status!r}")
        super().__init__(status, message)
        self.status = status
        self.message = message
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        self.headers: list[tuple[str, str]] = [_header(str(k), str(v)) for k, v in items]

    def __repr__(self) -> str:
        return f"Reject({self.status!r}, {self.message!r})"


def _header(name: str, value: str) -> tuple[str, str]:
    """A response header as given, if HTTP allows it (the rule the answer is written
    with, ``_wire.handshake``'s), checked when the hook raises rather than when answering."""
    if not name.isascii() or not is_token(name.encode()):
        raise ValueError(f"Reject header name {name!r} is not an HTTP token (letters, digits, -)")
    try:
        allowed = is_field_value(value.encode("latin-1"))
    except UnicodeEncodeError:
        allowed = False
    if not allowed:
        raise ValueError(
            f"Reject header {name} has a value {value!r} with a line break, a control"
            " character or a character beyond Latin-1"
        )
    return name, value


class ProtocolError(WsrouteError):
    """A client frame violates wire protocol v1.

    ``type`` and ``id`` carry what could be read of the frame, so the error reply
    can echo them; they are ``None`` when unreadable.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        type: str | None = None,
        id: int | str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.type = type
        self.id = id
        self.details = details


class ConnectionClosed(WsrouteError):
    """The connection is closing or closed; nothing more can be sent on it."""


class NotRunningError(WsrouteError, RuntimeError):
    """The operation needs a running app (inside ``serve``/``run`` or its lifespan)."""


class AlreadyRunningError(WsrouteError, RuntimeError):
    """The app is serving already: an App serves once at a time (create another App on
    the same broker to simulate another process)."""


class BrokerError(WsrouteError):
    """The broker could not carry out an operation."""


class BrokerClosed(BrokerError):
    """The broker session was closed; publish and subscribe are no longer possible."""


class HistoryUnsupported(BrokerError):
    """The broker keeps no history, or the topic has none (``App(history=...)``)."""


class PresenceUnsupported(BrokerError):
    """The broker keeps no presence, or the topic has none (``App(presence=...)``)."""


class LoadError(WsrouteError):
    """The ``MODULE:ATTR`` given to the CLI could not be loaded as an App."""


class ListenError(WsrouteError, OSError):
    """The server could not listen on ``host:port``: the port is taken, the address
    is not this machine's, or the process may not bind it.

    Attributes:
        host: the address asked for.
        port: the port asked for.
        error: the system's error.
    """

    def __init__(self, host: str, port: int, error: OSError) -> None:
        shown = f"[{host}]" if ":" in host else host
        super().__init__(error.errno, f"cannot listen on {shown}:{port}: {error}")
        self.host = host
        self.port = port
        self.error = error

    def __str__(self) -> str:
        return str(self.args[1])


class ClientError(WsrouteError):
    """Base class of the Python client's errors."""


class ClientHandlerError(ClientError):
    """The server answered the request with an error reply.

    Attributes:
        type: the request's message type.
        code: the error's stable code (``not_found``, ``invalid_data``, ...).
        message: the human-readable message.
        details: the error's details, or ``None``.
    """

    def __init__(self, type: str, code: str, message: str, details: Any = None) -> None:
        # The details too: uncaught, this is what the traceback shows, and for
        # invalid_data only they say which field was wrong and why.
        shown = "" if details is None else f"; details: {details!r}"
        super().__init__(f"{type}: {code}: {message}{shown}")
        self.type = type
        self.code = code
        self.message = message
        self.details = details


class RequestTimeout(ClientError, TimeoutError):
    """No reply came within the request's timeout (a late reply is dropped)."""


class Disconnected(ClientError):
    """The connection dropped while the request was pending, or before it was sent.

    Attributes:
        code: the close code (1006 when the connection broke without one).
        reason: the close reason.
    """

    def __init__(self, message: str, code: int = 1006, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ClientClosed(Disconnected):
    """The client is closed for good: closed by the app, by a close the client does
    not reconnect after, or after its reconnect attempts ran out."""


class ConnectError(ClientError):
    """The client could not connect.

    Attributes:
        status: the HTTP status of a refused handshake, or ``None`` when the server
            could not be reached.
        body: the refusal's body (its reason), possibly empty.
    """

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class InvalidReply(ClientError):
    """The reply's data does not match the type asked for with ``reply_type``.

    Attributes:
        details: ``{"path", "message"}`` entries, as the server's ``invalid_data``.
    """

    def __init__(self, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.details = details


class EventsLost(ClientError):
    """An event stream under the ``"error"`` overflow policy filled up: it stopped
    taking events, so some were lost."""
