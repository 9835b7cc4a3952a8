"""Plain HTTP next to the WebSocket upgrade: GET routes, their answers, sans-IO.

A wsroute port serves WebSocket upgrades on any path. A request that asks for no
upgrade (a browser opening a page, a health checker, curl) is a plain request: the
app may answer it from a GET route (``app.get``), a static directory
(``app.add_static``) or the built-in JavaScript client (``App(client_path=...)``);
anything else gets ``426 Upgrade Required`` saying what the endpoint is. Each
plain request gets one answer and the connection is closed after it
(``Connection: close``): these routes serve pages, scripts and probes, not APIs.

Pure: no trio, no sockets. ``_runtime`` reads the request and writes the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from ._errors import RegistrationError
from ._request import Request
from ._wire.handshake import NOT_AN_UPGRADE
from ._wire.headers import is_field_value, is_token

#: Methods a plain route answers; HEAD gets GET's headers without the body.
METHODS: Final = ("GET", "HEAD")

HeaderItems = Mapping[str, str] | Sequence[tuple[str, str]]
#: What a request's path carries as it is (RFC 3986 ``pchar`` and ``/``): a client
#: percent-encodes anything else, and paths are matched as sent, undecoded.
_AS_SENT: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]")


class Response:
    """The answer to a plain HTTP request.

    Args:
        body: the body; a ``str`` is sent as UTF-8.
        status: the HTTP status, 200-599.
        content_type: defaults to ``text/plain; charset=utf-8`` for a ``str`` body,
            ``application/octet-stream`` for ``bytes``.
        headers: extra headers. ``Content-Length`` and ``Connection`` are set by
            wsroute.

    Raises:
        ValueError: a status outside 200-599, or a header HTTP does not allow.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: str | bytes = b"",
        status: int = 200,
        *,
        content_type: str | None = None,
        headers: HeaderItems | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"a response status is 200-599, not {status!r}")
        if isinstance(body, str):
            data = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        elif isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
            content_type = content_type or "application/octet-stream"
        else:
            raise TypeError(f"a response body is str or bytes, not {type(body).__name__}")
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        extra = [_header(str(name), str(value)) for name, value in items]
        self.status = status
        self.body = data
        self.headers: list[tuple[bytes, bytes]] = [
            _header("Content-Type", content_type),
            *(h for h in extra if h[0].lower() not in (b"content-length", b"connection")),
        ]

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"

    def encode(self, *, head: bool = False) -> bytes:
        """The whole answer, status line to body (``head``: without the body)."""
        try:
            phrase = HTTPStatus(self.status).phrase.encode()
        except ValueError:
            phrase = b""
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, phrase)]
        lines += [b"%s: %s\r\n" % header for header in self.headers]
        if self.status not in (204, 304):  # they have no body to measure
            lines.append(b"Content-Length: %d\r\n" % len(self.body))
        lines.append(b"Connection: close\r\n\r\n")
        return b"".join(lines) + (b"" if head or self.status in (204, 304) else self.body)


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    raw_name = name.encode("latin-1", "replace")
    try:
        raw_value = value.encode("latin-1")
    except UnicodeEncodeError:
        raw_value = b"\n"  # refused below
    if not name.isascii() or not is_token(raw_name) or not is_field_value(raw_value):
        raise ValueError(f"invalid response header {name!r}: {value!r}")
    return raw_name, raw_value


def not_an_upgrade() -> Response:
    """``426`` for a plain request nothing here answers."""
    return Response(NOT_AN_UPGRADE.decode(), 426, headers={"Upgrade": "websocket"})


def method_not_allowed() -> Response:
    return Response("method not allowed\n", 405, headers={"Allow": ", ".join(METHODS)})


#: ``async def handler(request: Request) -> Response | str | bytes``
RouteHandler = Callable[[Request], Awaitable[Any]]
#: What a static mount answers for a path below it: a response, or ``None`` (404).
Mounted = Callable[[str, Request], Awaitable[Response | None]]


class HTTPRoutes:
    """The plain routes of one app: exact paths, then mounts by longest prefix."""

    __slots__ = ("_mounts", "_paths")

    def __init__(self) -> None:
        self._paths: dict[str, tuple[RouteHandler, str]] = {}
        self._mounts: list[tuple[str, Mounted, str]] = []

    def __bool__(self) -> bool:
        return bool(self._paths or self._mounts)

    def add(self, path: str, handler: RouteHandler, what: str) -> None:
        _check_path(path, what)
        if path in self._paths:
            raise RegistrationError(
                f"{what}: the path {path!r} is already answered by {self._paths[path][1]};"
                " a path has one GET route"
            )
        self._paths[path] = (handler, what)

    def mount(self, prefix: str, answer: Mounted, what: str) -> None:
        _check_path(prefix, what)
        prefix = prefix.rstrip("/") or "/"
        for existing, _, other in self._mounts:
            if existing == prefix:
                raise RegistrationError(f"{what}: {prefix!r} is already mounted ({other})")
        self._mounts.append((prefix, answer, what))
        self._mounts.sort(key=lambda mount: len(mount[0]), reverse=True)

    def copy(self) -> HTTPRoutes:
        """Another table with the same routes, to add to without changing this one."""
        other = HTTPRoutes()
        other._paths = dict(self._paths)
        other._mounts = list(self._mounts)
        return other

    def owners(self) -> list[tuple[str, str]]:
        """``(path, what answers it)`` for every route and mount point."""
        rows = [(path, what) for path, (_, what) in self._paths.items()]
        return rows + [(prefix, what) for prefix, _, what in self._mounts]

    def find(self, path: str) -> tuple[RouteHandler | None, Mounted | None, str]:
        """The route for ``path``: ``(handler, None, "")``, ``(None, mount, rest)``
        where ``rest`` is the path below the mount, or ``(None, None, "")``."""
        exact = self._paths.get(path)
        if exact is not None:
            return exact[0], None, ""
        for prefix, answer, _ in self._mounts:
            if prefix == "/":
                return None, answer, path[1:]
            if path == prefix or path.startswith(prefix + "/"):
                return None, answer, path[len(prefix) + 1 :]
        return None, None, ""

    def paths(self) -> list[tuple[str, str]]:
        """``(path, what answers it)`` for every route and mount, for ``wsroute routes``."""
        rows = [(path, what) for path, (_, what) in self._paths.items()]
        rows += [(prefix.rstrip("/") + "/*", what) for prefix, _, what in self._mounts]
        return sorted(rows)


def _check_path(path: object, what: str) -> None:
    """Refuse a path that no request could match.

    Raises:
        RegistrationError: not a path, a path with a parameter (``/items/{id}``), or
            with a character a client sends percent-encoded.
    """
    if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path:
        raise RegistrationError(
            f"{what}: a path starts with '/' and has no query or fragment, not {path!r}"
        )
    if "{" in path or "}" in path:
        raise RegistrationError(
            f"{what}: {path!r} looks like a path parameter, which GET routes do not have:"
            " a route answers one exact path; pass values in the query string"
            " (/items?id=1) and read request.query"
        )
    encoded = sorted({char for char in path if not _AS_SENT.fullmatch(char)})
    if encoded:
        raise RegistrationError(
            f"{what}: no request would match {path!r}: clients percent-encode"
            f" {' '.join(map(repr, encoded))}, and paths are matched as sent; write the"
            f" path percent-encoded, e.g. {_percent_encoded(path)!r}"
        )


def _percent_encoded(path: str) -> str:
    return "".join(
        char if _AS_SENT.fullmatch(char) else "".join(f"%{b:02X}" for b in char.encode())
        for char in path
    )


def as_response(result: object) -> Response:
    """A GET handler's return value as a response.

    Raises:
        TypeError: the handler returned something else.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, str | bytes):
        return Response(result)
    raise TypeError(f"a GET route returns a Response, str or bytes, not {type(result).__name__}")
