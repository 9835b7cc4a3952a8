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
from typing import TYPE_CHECKING

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
_HEADER = re.compile(rb"(%s):[ \t]*(.*?)[ \t]*" % _TOKEN, re.DOTALL)
_IS_TOKEN = re.compile(_TOKEN)
# Control characters other than HTAB (CR and LF included): never in a field value.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Never in a request line (its CR aside).
_NOT_IN_LINE = re.compile(rb"[^\x20-\x7e\r]")
_END = re.compile(rb"\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")

_CONNECTING = ConnectionState.CONNECTING
_VERSION = b"13"


def _token_list(value: bytes) -> list[str]:
    """The elements of a comma-separated header value, empty ones left out."""
    return [item for item in (part.strip() for part in value.decode("ascii").split(",")) if item]


def _refuse(message: str, status: int = 400) -> RemoteProtocolError:
    headers = [(b"Sec-WebSocket-Version", _VERSION)] if status == 426 else []
    return RemoteProtocolError(
        message, event_hint=RejectConnection(status_code=status, headers=headers)
    )


def _parse(head: bytes) -> Request:
    """The upgrade request in ``head`` (its lines, without the blank line ending it).

    Stricter than h11 where HTTP allows a server to be: HTTP/1.1 only (RFC 6455
    section 4.1 requires at least 1.1, and there is no 2.x over HTTP/1 framing), no
    line folding, no control characters in values, exactly one Host, no body, a
    Sec-WebSocket-Key of 16 bytes in base64.

    Raises:
        RemoteProtocolError: with the answer to send as its ``event_hint``.
    """
    lines = _LINE_END.split(head)
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise _refuse("not an HTTP/1.1 request line")
    method, target, major, minor = match.groups()
    if (major, minor) != (b"1", b"1"):
        raise _refuse("HTTP version must be 1.1")
    if method != b"GET":
        raise _refuse("Request method must be GET")
    connection: list[str] = []
    upgrade: list[str] = []
    extensions: list[str] = []
    subprotocols: list[str] = []
    host: list[bytes] = []
    key: list[bytes] = []
    version: bytes | None = None
    has_body = False
    headers: list[tuple[bytes, bytes]] = []
    try:
        for line in lines[1:]:
            field = _HEADER.fullmatch(line)
            if field is None or _CONTROL.search(field[2]):
                raise _refuse("malformed header line")  # folded lines included
            name, value = field[1].lower(), field[2]
            # As wsproto does: Host, the extensions and the subprotocols are only
            # reported in their own fields of the Request.
            if name == b"host":
                host.append(value)
                continue
            if name == b"sec-websocket-extensions":
                extensions += _token_list(value)
                continue
            if name == b"sec-websocket-protocol":
                subprotocols += _token_list(value)
                continue
            if name == b"connection":
                connection += _token_list(value)
            elif name == b"upgrade":
                upgrade += _token_list(value)
            elif name == b"sec-websocket-key":
                key.append(value)
            elif name == b"sec-websocket-version":
                version = value
            elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                has_body = True
            headers.append((name, value))
    except UnicodeDecodeError:
        raise _refuse("non-ASCII characters in a list header") from None
    # The order and answers of wsproto's own checks.
    if not any(token.lower() == "upgrade" for token in connection):
        raise _refuse("Missing header, 'Connection: Upgrade'")
    if version != _VERSION:
        raise _refuse("Missing header, 'Sec-WebSocket-Version'", 426 if version else 400)
    if len(key) != 1 or not _valid_key(key[0]):
        raise _refuse("Missing header, 'Sec-WebSocket-Key', or not 16 bytes in base64")
    if not any(token.lower() == "websocket" for token in upgrade):
        raise _refuse("Missing header, 'Upgrade: websocket'")
    if len(host) != 1 or not host[0].isascii():
        raise _refuse("Missing header, 'Host', or more than one")
    if has_body:
        raise _refuse("an upgrade request has no body")
    return Request(
        host=host[0].decode("ascii"),
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


def _header_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    lines = []
    for name, value in headers:
        if not _IS_TOKEN.fullmatch(name) or _CONTROL.search(value):
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
        self._events: list[Event] = []
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
        self._request = _parse(head[:-1] if head.endswith(b"\r") else head)
        del buffer[: end.end()]
        self._events.append(self._request)

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
        answer = b"HTTP/1.1 101 Switching Protocols\r\n%s\r\n" % _header_lines(
            [*headers, *event.extra_headers]
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
