"""The server's side of the opening handshake (RFC 6455 section 4.2), without h11.

wsproto reads the upgrade request and writes the answer through h11, a complete
HTTP/1.1 implementation: most of what a new connection costs the server (see
docs/performance.md). An upgrade request is one bodiless GET and the answer a status
line and a few headers, so ``ServerHandshake`` parses and writes them itself, in
place of wsproto's ``H11Handshake`` on the server side: the same events (``Request``;
then ``AcceptConnection``, or ``RejectConnection`` and ``RejectData``), the same
statuses for the same faults (400, and 426 with ``Sec-WebSocket-Version: 13``), and
a stricter reading of HTTP (see ``_parse``). Sans-IO: it only turns bytes into events
and events into bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, NamedTuple

from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import AcceptConnection, Event, RejectConnection, RejectData, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: The most a request's head may take before its end is found (h11's default limit).
MAX_HEAD = 16 * 1024

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(%s) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])" % _TOKEN)
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# What a request's head may hold: no control characters but HTAB, LF and CR.
_HEAD_BYTES = bytes((9, 10, 13, *range(0x20, 0x7F), *range(0x80, 0x100)))
# What a header's value may hold: no control characters but HTAB (so no line break).
_VALUE_BYTES = bytes((9, *range(0x20, 0x7F), *range(0x80, 0x100)))
# Never in a request line (its CR aside).
_NOT_IN_LINE = re.compile(rb"[^\x20-\x7e\r]")
_END = re.compile(rb"\n\r?\n")

# Headers _parse looks at; of them, the ones wsproto reports only in their own fields
# of the Request (Host, the extensions, the subprotocols), not among the headers.
_REPORTED_APART = frozenset((b"host", b"sec-websocket-extensions", b"sec-websocket-protocol"))
_CHECKED = _REPORTED_APART | {
    b"connection",
    b"upgrade",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"transfer-encoding",
    b"content-length",
}

_CONNECTING = ConnectionState.CONNECTING
_VERSION = b"13"


def _tokens(values: list[bytes] | None) -> list[str]:
    """The elements of comma-separated header values, empty ones left out. (Callers
    compare list tokens in lower case themselves where HTTP says so.)"""
    if not values:
        return []
    if len(values) == 1 and values[0].isalpha():  # one token: most often
        return [values[0].decode("ascii")]
    return [
        item
        for value in values
        for item in (p.strip() for p in value.decode("ascii").split(","))
        if item
    ]


def _refuse(message: str, status: int = 400) -> RemoteProtocolError:
    headers = [(b"Sec-WebSocket-Version", _VERSION)] if status == 426 else []
    return RemoteProtocolError(
        message, event_hint=RejectConnection(status_code=status, headers=headers)
    )


#: The body of the answer to a plain HTTP request nothing else answers (``_http``).
NOT_AN_UPGRADE = (
    b"This is a WebSocket endpoint: connect with a WebSocket client (ws:// or wss://).\n"
)


class PlainRequest(NamedTuple):
    """A request that asks for no upgrade at all (a browser opening a page, a health
    checker, curl): reported as an event, for the app's plain routes (``_http``)."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]  # (lowercase name, value), in order


def _plain_request(method: bytes, target: bytes, lines: list[bytes]) -> PlainRequest:
    headers = []
    for line in lines:
        name, _, value = line.removesuffix(b"\r").partition(b":")
        headers.append((name.lower(), value.strip(b" \t")))
    return PlainRequest(method.decode("ascii"), target.decode("ascii"), headers)


def _parse(head: bytes) -> Request | PlainRequest:
    """The upgrade request in ``head`` (its lines, without the blank line ending it),
    or the plain request it is if it asks for no upgrade.

    Stricter than h11 where HTTP allows a server to be: HTTP/1.1 only (RFC 6455
    section 4.1 requires at least 1.1, and there is no 2.x over HTTP/1 framing), no
    line folding, no control characters in values, exactly one Host, no body, a
    Sec-WebSocket-Key of 16 bytes in base64.

    Raises:
        RemoteProtocolError: with the answer to send as its ``event_hint``.
    """
    if head.translate(None, _HEAD_BYTES):
        raise _refuse("control characters in the request")
    lines = head.split(b"\n")
    match = _REQUEST_LINE.fullmatch(lines[0].removesuffix(b"\r"))
    if match is None:
        raise _refuse("not an HTTP/1.1 request line")
    method, target, major, minor = match.groups()
    if (major, minor) != (b"1", b"1"):
        raise _refuse("HTTP version must be 1.1")
    headers: list[tuple[bytes, bytes]] = []
    checked: dict[bytes, list[bytes]] = {}  # the values of the headers checked below
    for line in lines[1:]:
        line = line.removesuffix(b"\r")
        name, colon, value = line.partition(b":")
        # Not a token (empty, a space before the colon, a folded line's leading
        # space...), or a CR that is not a line's end.
        if not colon or not is_token(name) or b"\r" in line:
            raise _refuse("malformed header line")
        name, value = name.lower(), value.strip(b" \t")
        if name in _CHECKED:
            checked.setdefault(name, []).append(value)
            if name in _REPORTED_APART:
                continue
        headers.append((name, value))
    get = checked.get
    try:
        connection = _tokens(get(b"connection"))
        upgrade = _tokens(get(b"upgrade"))
        extensions = _tokens(get(b"sec-websocket-extensions"))
        subprotocols = _tokens(get(b"sec-websocket-protocol"))
    except UnicodeDecodeError:
        raise _refuse("non-ASCII characters in a list header") from None
    if not upgrade and "upgrade" not in (token.lower() for token in connection):
        return _plain_request(method, target, lines[1:])  # asks for no upgrade at all
    if method != b"GET":
        raise _refuse("Request method must be GET")
    versions, keys, hosts = get(b"sec-websocket-version"), get(b"sec-websocket-key"), get(b"host")
    version = versions[-1] if versions else None  # the last, as wsproto
    # The order and answers of wsproto's own checks.
    if "upgrade" not in (token.lower() for token in connection):
        raise _refuse("Missing header, 'Connection: Upgrade'")
    if version != _VERSION:
        raise _refuse("Missing header, 'Sec-WebSocket-Version'", 426 if version else 400)
    if keys is None or len(keys) != 1 or not _valid_key(keys[0]):
        raise _refuse("Missing header, 'Sec-WebSocket-Key', or not 16 bytes in base64")
    if "websocket" not in (token.lower() for token in upgrade):
        raise _refuse("Missing header, 'Upgrade: websocket'")
    if hosts is None or len(hosts) != 1 or not hosts[0].isascii():
        raise _refuse("Missing header, 'Host', or more than one")
    lengths = get(b"content-length")
    if get(b"transfer-encoding") or (lengths and lengths != [b"0"]):
        raise _refuse("an upgrade request has no body")
    return Request(
        host=hosts[0].decode("ascii"),
        target=target.decode("ascii"),
        extensions=extensions,
        extra_headers=headers,
        subprotocols=subprotocols,
    )


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def accept_token(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def is_token(name: bytes) -> bool:
    """Whether ``name`` may be a header's name (an HTTP token)."""
    return bool(name) and not name.translate(None, _TOKEN_BYTES)


def is_field_value(value: bytes) -> bool:
    """Whether ``value`` may be a header's value: no line break may sneak another
    header (or a body) into a message."""
    return not value.translate(None, _VALUE_BYTES)


def _header_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    lines = []
    for name, value in headers:
        if not is_token(name) or not is_field_value(value):
            raise LocalProtocolError(f"invalid response header {name!r}: {value!r}")
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)


class ServerHandshake:
    """wsproto's ``H11Handshake`` for a server, without h11 (see the module docstring).

    Bytes that arrive after the request and before the answer break RFC 6455 (a
    client waits for the answer); they are kept, up to ``MAX_HEAD``, and read as the
    connection's first frames once it is open. (wsroute reads no more before it
    answers: only what came with the request can be early.)
    """

    __slots__ = (
        "_buffer",
        "_connection",
        "_events",
        "_in_first_line",
        "_request",
        "_scanned",
        "_state",
    )

    def __init__(self) -> None:
        self._state = _CONNECTING
        self._buffer = bytearray()
        self._scanned = 0  # where the search for the blank line resumes
        self._in_first_line = True
        self._events: list[Event] = []  # and a PlainRequest
        self._request: Request | None = None
        self._connection: Connection | None = None

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connection(self) -> Connection | None:
        return self._connection

    def events(self) -> Iterator[Event]:
        while self._events:
            yield self._events.pop(0)

    def receive_data(self, data: bytes | None) -> None:
        if self._state is not _CONNECTING:
            return  # the answer is sent: nothing more is read through the handshake
        if not data:
            if self._request is None:
                self._state = ConnectionState.CLOSED  # the peer left before asking
            return
        buffer = self._buffer
        if self._request is not None:
            buffer += data
            if len(buffer) > MAX_HEAD:
                raise RemoteProtocolError("data before the handshake's answer", event_hint=None)
            return
        if not buffer:
            data = data.lstrip(b"\r\n")  # empty lines before a request are allowed
        if self._in_first_line:
            # Not HTTP at all (TLS, say): say so now rather than at the timeout.
            line_end = data.find(b"\n")
            if _NOT_IN_LINE.search(data, 0, len(data) if line_end < 0 else line_end):
                raise _refuse("not an HTTP/1.1 request line")
            self._in_first_line = line_end < 0
        buffer += data
        end = _END.search(buffer, self._scanned)
        if end is None:
            if len(buffer) > MAX_HEAD:
                raise _refuse("request head too long")
            self._scanned = max(0, len(buffer) - 2)
            return
        if end.start() > MAX_HEAD:
            raise _refuse("request head too long")
        head = bytes(buffer[: end.start()])
        parsed = _parse(head[:-1] if head.endswith(b"\r") else head)
        if isinstance(parsed, PlainRequest):
            # Answered by the app's plain routes, not by an upgrade: nothing more is
            # read through the handshake (the connection closes after the answer).
            self._state = ConnectionState.REJECTING
            self._buffer = bytearray()
            self._events.append(parsed)  # type: ignore[arg-type]
            return
        self._request = parsed
        del buffer[: end.end()]
        self._events.append(parsed)

    def send(self, event: Event) -> bytes:
        if isinstance(event, AcceptConnection):
            return self._accept(event)
        if isinstance(event, RejectConnection):
            return self._reject(event)
        if isinstance(event, RejectData):
            if self._state is not ConnectionState.REJECTING:
                raise LocalProtocolError(f"Cannot send rejection data in state {self._state}")
            if event.body_finished:
                self._state = ConnectionState.CLOSED
            return event.data
        raise LocalProtocolError(f"Event {event} cannot be sent during the handshake")

    def _accept(self, event: AcceptConnection) -> bytes:
        request = self._request
        if request is None or self._state is not _CONNECTING:
            raise LocalProtocolError(f"cannot accept in state {self._state}")
        if event.extensions:
            raise LocalProtocolError("wsroute negotiates no extension")
        key = next(value for name, value in request.extra_headers if name == b"sec-websocket-key")
        headers = [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", accept_token(key)),
        ]
        if event.subprotocol is not None:
            if event.subprotocol not in request.subprotocols:
                raise LocalProtocolError(f"unexpected subprotocol {event.subprotocol}")
            headers.append((b"Sec-WebSocket-Protocol", event.subprotocol.encode("ascii")))
        answer = b"HTTP/1.1 101 Switching Protocols\r\n%s%s\r\n" % (
            b"".join(b"%s: %s\r\n" % header for header in headers),  # all valid
            _header_lines(event.extra_headers),
        )
        self._connection = Connection(ConnectionType.SERVER, None, bytes(self._buffer))
        self._state = ConnectionState.OPEN
        self._buffer = bytearray()
        self._request = None
        return answer

    def _reject(self, event: RejectConnection) -> bytes:
        if self._state is not _CONNECTING:
            raise LocalProtocolError(f"Connection cannot be rejected in state {self._state}")
        status = event.status_code
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        headers = list(event.headers)
        if not event.has_body:
            headers.append((b"Content-Length", b"0"))
        # The connection ends after a refusal, whatever the client hoped.
        headers.append((b"Connection", b"close"))
        self._state = ConnectionState.REJECTING if event.has_body else ConnectionState.CLOSED
        self._request = None
        self._buffer = bytearray()
        return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, phrase, _header_lines(headers))


class ServerConnection(WSConnection):
    """wsproto's server ``WSConnection``, with ``ServerHandshake`` for its handshake
    (``WSConnection`` would build an h11 one first)."""

    def __init__(self) -> None:  # no super().__init__(): it would build H11Handshake
        self.client = False
        self.handshake = ServerHandshake()  # type: ignore[assignment]
        self.connection = None
