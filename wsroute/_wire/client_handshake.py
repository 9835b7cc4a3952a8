"""The client's side of the opening handshake (RFC 6455 section 4.1), sans-IO.

For ``wsroute.testing``'s in-memory client: ``client_request`` writes an upgrade
request, ``ResponseReader`` reads the server's answer and checks a 101 as a client
must. Apart from the server's side (``handshake``) so that the server's module holds
only what serving needs; the syntax both share is in ``headers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .headers import (
    MAX_HEAD,
    NOT_IN_LINE,
    Headers,
    accept_token,
    header_lines,
    parse_headers,
    tokens,
)


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
        if not part or not part.isascii() or NOT_IN_LINE.search(part.encode()) or " " in part:
            raise ValueError(f"invalid request {what} {part!r}")
    lines = [
        b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        % (target.encode("ascii"), host.encode("ascii"), key)
    ]
    if subprotocols:
        lines.append(b"Sec-WebSocket-Protocol: %s\r\n" % ", ".join(subprotocols).encode("ascii"))
    if extensions:
        lines.append(header_lines([(b"Sec-WebSocket-Extensions", extensions.encode("ascii"))]))
    lines.append(header_lines(headers))
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
            headers = parse_headers(lines[1:])
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
            upgrade = [token.lower() for token in tokens([found.get(b"upgrade", b"")])]
            connection = [token.lower() for token in tokens([found.get(b"connection", b"")])]
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
