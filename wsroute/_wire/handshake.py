"""The server's side of the opening handshake (RFC 6455 section 4.2), sans-IO.

An upgrade request is one bodiless GET and its answer a status line and a few
headers, so they are read and written here directly rather than through an HTTP
library: most of what a new connection costs is its handshake. ``RequestReader``
takes bytes until the request's head is whole and returns an
:class:`UpgradeRequest`, or a :class:`PlainRequest` for one that asks for no upgrade
at all (a browser opening a page), or raises :class:`Refusal` with the status to
answer (400; 426 with ``Sec-WebSocket-Version: 13`` for another version; 431 with a
line of text for a head over ``MAX_HEAD``, which a valid request may reach with a
long query or cookie, so its sender is told what the limit is). HTTP is
read strictly (see ``_parse``). ``accept`` writes the 101, ``refuse`` any other
answer.

Subprotocols and extensions are offered by the client and chosen by the server:
``UpgradeRequest.subprotocols`` and ``.extensions`` (each offer parsed into its
name and parameters) say what was offered, and ``accept`` writes what was chosen.
The syntax this shares with the client's side is in ``headers``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Final, NamedTuple

from .headers import (
    MAX_HEAD,
    NOT_IN_LINE,
    Extension,
    Headers,
    accept_token,
    extension_offers,
    header_lines,
    is_token,
    tokens,
)

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(%s) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])" % _TOKEN)
# What a request's head may hold: no control characters but HTAB, LF and CR.
_HEAD_BYTES = bytes((9, 10, 13, *range(0x20, 0x7F), *range(0x80, 0x100)))
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


class Refusal(Exception):
    """The request cannot be upgraded: answer ``status`` (400, 426 or 431) and close.

    Only a 431 has a body, its ``message``: the others answer requests no WebSocket
    client sends.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def headers(self) -> Headers:
        """What the answer says besides its status: the version wsroute speaks, for
        426; the body's type, for 431."""
        if self.status == 426:
            return [(b"Sec-WebSocket-Version", _VERSION)]
        if self.status == 431:
            return [(b"Content-Type", b"text/plain; charset=utf-8")]
        return []

    @property
    def body(self) -> bytes:
        return f"{self.message}\n".encode() if self.status == 431 else b""


def _too_large() -> Refusal:
    return Refusal(
        f"request head too large: it exceeds the limit of {MAX_HEAD // 1024} KiB"
        f" ({MAX_HEAD} bytes) on the request line and headers",
        431,
    )


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
        connection = tokens(get(b"connection"))
        upgrade = tokens(get(b"upgrade"))
        extensions = extension_offers(get(b"sec-websocket-extensions"))
        subprotocols = tokens(get(b"sec-websocket-protocol"))
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
            if NOT_IN_LINE.search(data, 0, len(data) if line_end < 0 else line_end):
                raise Refusal("not an HTTP/1.1 request line")
            self._in_first_line = line_end < 0
        buffer += data
        end = _END.search(buffer, self._scanned)
        if end is None:
            # Up to two of the bytes may be the start of the blank line ending the head,
            # which a whole head does not count (below): the same limit in any reads.
            if len(buffer) - 2 > MAX_HEAD:
                raise _too_large()
            self._scanned = max(0, len(buffer) - 2)
            return None
        if end.start() > MAX_HEAD:
            raise _too_large()
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
        lines.append(header_lines([(b"Sec-WebSocket-Extensions", extensions.encode("ascii"))]))
    lines.append(header_lines(headers))
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
        header_lines(headers),
        len(body),
        body,
    )
