"""The server's side of the opening handshake (RFC 6455 section 4.2), sans-IO.

An upgrade request is one bodiless GET and its answer a status line and a few
headers, so they are read and written here directly rather than through an HTTP
library: most of what a new connection costs is its handshake. ``RequestReader``
takes bytes until the request's head is whole and returns an
:class:`UpgradeRequest`, or a :class:`PlainRequest` for one that asks for no upgrade
at all (a browser opening a page), or raises :class:`Refusal` with the status to
answer (400; 426 with ``Sec-WebSocket-Version: 13`` for another version). HTTP is
read strictly (see ``_parse``). ``accept`` writes the 101, ``refuse`` any other
answer.

Subprotocols and extensions are offered by the client and chosen by the server:
``UpgradeRequest.subprotocols`` and ``.extensions`` (each offer parsed into its
name and parameters) say what was offered, and ``accept`` writes what was chosen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Final, NamedTuple

#: The most a request's head may take before its end is found.
MAX_HEAD: Final = 16 * 1024

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
_VERSION = b"13"

# The headers the handshake itself reads.
_CHECKED = frozenset(
    (
        b"host",
        b"connection",
        b"upgrade",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"transfer-encoding",
        b"content-length",
    )
)

#: The body of the answer to a plain HTTP request nothing else answers (``_http``).
NOT_AN_UPGRADE: Final = (
    b"This is a WebSocket endpoint: connect with a WebSocket client (ws:// or wss://).\n"
)

Headers = list[tuple[bytes, bytes]]


class Refusal(Exception):
    """The request cannot be upgraded: answer ``status`` (400 or 426) and close."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def headers(self) -> Headers:
        """What the answer says besides its status: the version wsroute speaks, for 426."""
        return [(b"Sec-WebSocket-Version", _VERSION)] if self.status == 426 else []


class Extension(NamedTuple):
    """One extension the client offered: ``permessage-deflate;
    client_max_window_bits`` is ``Extension("permessage-deflate",
    (("client_max_window_bits", None),))``."""

    name: str
    params: tuple[tuple[str, str | None], ...]


class UpgradeRequest(NamedTuple):
    """A valid WebSocket upgrade request."""

    target: str  # the request target: path and query
    headers: Headers  # every header, names in lower case, in order
    key: bytes  # Sec-WebSocket-Key
    subprotocols: list[str]  # offered, in the client's order of preference
    extensions: list[Extension]  # offered, in the client's order


class PlainRequest(NamedTuple):
    """A request that asks for no upgrade at all (a browser opening a page, a health
    checker, curl), for the app's plain routes (``_http``)."""

    method: str
    target: str
    headers: Headers  # names in lower case, in order


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


def parse_extensions(value: bytes) -> list[Extension]:
    """A ``Sec-WebSocket-Extensions`` value's extensions, with their parameters.

    Raises:
        UnicodeDecodeError: the value is not ASCII.
    """
    return _extensions([value])


def _extensions(values: list[bytes] | None) -> list[Extension]:
    """``name; param; param=value`` offers, as RFC 6455 section 9.1 writes them."""
    offers = []
    for offer in _tokens(values):
        name, *params = (part.strip() for part in offer.split(";"))
        parsed = []
        for param in params:
            key, equals, value = param.partition("=")
            parsed.append((key.strip(), value.strip().strip('"') if equals else None))
        offers.append(Extension(name, tuple(parsed)))
    return offers


def _headers(lines: Sequence[bytes]) -> Headers:
    headers = []
    for line in lines:
        name, _, value = line.removesuffix(b"\r").partition(b":")
        headers.append((name.lower(), value.strip(b" \t")))
    return headers


def _parse(head: bytes) -> UpgradeRequest | PlainRequest:
    """The request in ``head`` (its lines, without the blank line ending it).

    Stricter than a general HTTP parser where a server may be: HTTP/1.1 only (RFC 6455
    section 4.1 requires at least 1.1, and there is no 2.x over HTTP/1 framing), no
    line folding, no control characters in values, exactly one Host, no body, a
    Sec-WebSocket-Key of 16 bytes in base64.

    Raises:
        Refusal: with the status to answer.
    """
    if head.translate(None, _HEAD_BYTES):
        raise Refusal("control characters in the request")
    lines = head.split(b"\n")
    match = _REQUEST_LINE.fullmatch(lines[0].removesuffix(b"\r"))
    if match is None:
        raise Refusal("not an HTTP/1.1 request line")
    method, target, major, minor = match.groups()
    if (major, minor) != (b"1", b"1"):
        raise Refusal("HTTP version must be 1.1")
    headers: Headers = []
    checked: dict[bytes, list[bytes]] = {}  # the values of the headers checked below
    for line in lines[1:]:
        line = line.removesuffix(b"\r")
        name, colon, value = line.partition(b":")
        # Not a token (empty, a space before the colon, a folded line's leading
        # space...), or a CR that is not a line's end.
        if not colon or not is_token(name) or b"\r" in line:
            raise Refusal("malformed header line")
        name, value = name.lower(), value.strip(b" \t")
        if name in _CHECKED:
            checked.setdefault(name, []).append(value)
        headers.append((name, value))
    get = checked.get
    try:
        connection = _tokens(get(b"connection"))
        upgrade = _tokens(get(b"upgrade"))
        extensions = _extensions(get(b"sec-websocket-extensions"))
        subprotocols = _tokens(get(b"sec-websocket-protocol"))
    except UnicodeDecodeError:
        raise Refusal("non-ASCII characters in a list header") from None
    versions, keys, hosts = get(b"sec-websocket-version"), get(b"sec-websocket-key"), get(b"host")
    if not upgrade and "upgrade" not in (token.lower() for token in connection):
        if hosts is None or len(hosts) != 1:  # RFC 9112 section 3.2
            raise Refusal("Missing header, 'Host', or more than one")
        return PlainRequest(method.decode("ascii"), target.decode("ascii"), headers)
    if method != b"GET":
        raise Refusal("Request method must be GET")
    version = versions[-1] if versions else None  # the last, as other servers read it
    if "upgrade" not in (token.lower() for token in connection):
        raise Refusal("Missing header, 'Connection: Upgrade'")
    if version != _VERSION:
        raise Refusal("Missing header, 'Sec-WebSocket-Version'", 426 if version else 400)
    if keys is None or len(keys) != 1 or not _valid_key(keys[0]):
        raise Refusal("Missing header, 'Sec-WebSocket-Key', or not 16 bytes in base64")
    if "websocket" not in (token.lower() for token in upgrade):
        raise Refusal("Missing header, 'Upgrade: websocket'")
    if hosts is None or len(hosts) != 1 or not hosts[0].isascii():
        raise Refusal("Missing header, 'Host', or more than one")
    lengths = get(b"content-length")
    if get(b"transfer-encoding") or (lengths and lengths != [b"0"]):
        raise Refusal("an upgrade request has no body")
    return UpgradeRequest(target.decode("ascii"), headers, keys[0], subprotocols, extensions)


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
            raise ValueError(f"invalid response header {name!r}: {value!r}")
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)


class RequestReader:
    """Reads one request's head from the bytes a new connection sends.

    Bytes after the head (frames a client sent before the answer, which RFC 6455
    forbids but some send) are kept in ``rest``, for the
    connection to read once open.
    """

    __slots__ = ("_buffer", "_in_first_line", "_scanned", "rest")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # where the search for the blank line resumes
        self._in_first_line = True
        self.rest = b""

    def feed(self, data: bytes) -> UpgradeRequest | PlainRequest | None:
        """Take ``data``; the request once its head is whole, else ``None``.

        Raises:
            Refusal: the request is not one to upgrade; answer its status.
        """
        buffer = self._buffer
        if not buffer:
            data = data.lstrip(b"\r\n")  # empty lines before a request are allowed
        if self._in_first_line:
            # Not HTTP at all (TLS, say): say so now rather than at the timeout.
            line_end = data.find(b"\n")
            if _NOT_IN_LINE.search(data, 0, len(data) if line_end < 0 else line_end):
                raise Refusal("not an HTTP/1.1 request line")
            self._in_first_line = line_end < 0
        buffer += data
        end = _END.search(buffer, self._scanned)
        if end is None:
            # Up to two of the bytes may be the start of the blank line ending the head,
            # which a whole head does not count (below): the same limit in any reads.
            if len(buffer) - 2 > MAX_HEAD:
                raise Refusal("request head too long")
            self._scanned = max(0, len(buffer) - 2)
            return None
        if end.start() > MAX_HEAD:
            raise Refusal("request head too long")
        head = bytes(buffer[: end.start()])
        request = _parse(head[:-1] if head.endswith(b"\r") else head)
        self.rest = bytes(buffer[end.end() :])
        self._buffer = bytearray()
        return request


def accept(
    request: UpgradeRequest,
    *,
    subprotocol: str | None = None,
    extensions: str | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """The ``101 Switching Protocols`` answer to ``request``.

    Args:
        subprotocol: the one chosen among those the client offered.
        extensions: the ``Sec-WebSocket-Extensions`` value of the extensions chosen
            among those it offered, with their parameters.

    Raises:
        ValueError: the subprotocol was not offered, or a header is invalid.
    """
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\n" % accept_token(request.key)
    ]
    if subprotocol is not None:
        if subprotocol not in request.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered")
        lines.append(b"Sec-WebSocket-Protocol: %s\r\n" % subprotocol.encode("ascii"))
    if extensions:
        lines.append(_header_lines([(b"Sec-WebSocket-Extensions", extensions.encode("ascii"))]))
    lines.append(_header_lines(headers))
    lines.append(b"\r\n")
    return b"".join(lines)


def refuse(status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> bytes:
    """An answer other than 101, after which the connection closes.

    Raises:
        ValueError: a header is invalid (it could smuggle another header in).
    """
    try:
        phrase = HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        status,
        phrase,
        _header_lines(headers),
        len(body),
        body,
    )


# -- the client's side (wsroute.testing's in-memory client) -----------------------------


def client_request(
    host: str,
    target: str,
    key: bytes,
    *,
    subprotocols: Sequence[str] = (),
    extensions: str | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """A client's upgrade request for ``target`` on ``host``, with ``key``: 16 random
    bytes in base64 (``base64.b64encode(os.urandom(16))``), offering ``extensions``
    (a ``Sec-WebSocket-Extensions`` value).

    Raises:
        ValueError: ``host`` or ``target`` could smuggle something into the request
            (a space, a line break, a non-ASCII character), or a header is invalid.
    """
    for part, what in ((host, "host"), (target, "target")):
        if not part or not part.isascii() or _NOT_IN_LINE.search(part.encode()) or " " in part:
            raise ValueError(f"invalid request {what} {part!r}")
    lines = [
        b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        % (target.encode("ascii"), host.encode("ascii"), key)
    ]
    if subprotocols:
        lines.append(b"Sec-WebSocket-Protocol: %s\r\n" % ", ".join(subprotocols).encode("ascii"))
    if extensions:
        lines.append(_header_lines([(b"Sec-WebSocket-Extensions", extensions.encode("ascii"))]))
    lines.append(_header_lines(headers))
    lines.append(b"\r\n")
    return b"".join(lines)


class Response(NamedTuple):
    """The server's answer to an upgrade request, as a client reads it."""

    status: int
    headers: Headers  # names in lower case, in order
    body: bytes  # a refusal's body (empty for 101)

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class ResponseReader:
    """Reads the answer to an upgrade request. ``feed`` returns it once whole: a 101
    as soon as its head is, a refusal once its ``Content-Length`` body is (or, without
    one, when ``feed_eof`` says the server closed). ``rest``: frames that came right
    after a 101.

    Raises:
        ValueError: not an HTTP answer, or a 101 whose ``Sec-WebSocket-Accept`` does
            not match the key.
    """

    __slots__ = ("_buffer", "_head", "_key", "_offered", "rest")

    def __init__(self, key: bytes, subprotocols: Sequence[str] = ()) -> None:
        self._key = key
        self._offered = tuple(subprotocols)
        self._buffer = b""
        self._head: tuple[int, Headers, int | None] | None = None  # status, headers, length
        self.rest = b""

    def feed(self, data: bytes) -> Response | None:
        self._buffer += data
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise ValueError("the answer's head is too long")
                return None
            lines = self._buffer[:end].split(b"\r\n")
            self._buffer = self._buffer[end + 4 :]
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
                raise ValueError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
            headers = _headers(lines[1:])
            status = int(parts[1])
            if status == 101:
                self._check_upgrade(headers)
                self.rest = self._buffer
                return Response(101, headers, b"")
            length = next((v for k, v in headers if k == b"content-length"), None)
            if length is not None and not length.isdigit():
                raise ValueError(f"invalid Content-Length {length[:20]!r}")
            self._head = (status, headers, int(length) if length is not None else None)
        status, headers, size = self._head
        if size is not None and len(self._buffer) >= size:
            return Response(status, headers, self._buffer[:size])
        return None

    def _check_upgrade(self, headers: Headers) -> None:
        """What RFC 6455 section 4.1 says a client must check of a 101.

        Raises:
            ValueError: one of them fails.
        """
        found = {name: value for name, value in headers}
        if accept_token(self._key) != found.get(b"sec-websocket-accept"):
            raise ValueError("the 101's Sec-WebSocket-Accept does not match the key")
        try:
            upgrade = [token.lower() for token in _tokens([found.get(b"upgrade", b"")])]
            connection = [token.lower() for token in _tokens([found.get(b"connection", b"")])]
        except UnicodeDecodeError:
            raise ValueError("non-ASCII characters in the 101's headers") from None
        if "websocket" not in upgrade or "upgrade" not in connection:
            raise ValueError("the 101 lacks Upgrade: websocket or Connection: Upgrade")
        chosen = found.get(b"sec-websocket-protocol")
        if chosen is not None and chosen.decode("latin-1") not in self._offered:
            raise ValueError(f"the server chose a subprotocol that was not offered: {chosen!r}")

    def feed_eof(self) -> Response | None:
        """The server closed: a refusal without a length ends here."""
        if self._head is None:
            return None
        status, headers, _ = self._head
        return Response(status, headers, self._buffer)
