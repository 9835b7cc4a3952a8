"""Who may connect: the checks run on an upgrade request before it is accepted.

In order, cheapest first: the upgrade rate per address (429), connection caps (503,
429), Origin allow-list (403), subprotocol and recovery positions (400), then the
app's accept hook (its own ``Reject`` status, or 500 if it crashes). A refused
request never becomes a connection, so no other hook runs. Every upgrade request
counts against the rate, refused or not: a client that ignores ``Retry-After``
stays refused.
"""

from __future__ import annotations

import inspect
import logging
import math
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple
from urllib.parse import urlencode

import trio

from .._config import Config
from .._errors import Reject
from .._history import Position
from .._protocol import RECOVER_PARAM, parse_recover
from .._proxy import format_address
from .._request import Request
from .limits import AddressWindows

logger = logging.getLogger("wsroute")

AcceptHook = Callable[[Request], Awaitable[Any]]

#: Query keys containing one of these (case-insensitive) are logged as [REDACTED].
CREDENTIAL_KEYS: Final = ("token", "auth", "key", "password", "passwd", "secret", "signature")


class Admission(NamedTuple):
    """What an accepted request brings to its connection."""

    user: Any
    subprotocol: str | None
    #: The positions the client saw, per topic (``wsroute.recover``), if it sent any.
    recover: dict[str, Position] | None = None


class Gate:
    """Admission control for one running app; also counts its live connections."""

    def __init__(self, config: Config, accept_hook: AcceptHook | None) -> None:
        self._config = config
        self._accept_hook = accept_hook
        self._total = 0
        self._per_ip: Counter[str] = Counter()
        rate = config.connect_rate_limit
        self._connects = AddressWindows(*rate) if rate is not None else None

    @property
    def connections(self) -> int:
        return self._total

    def reserve(self, request: Request) -> None:
        """Count the request against the caps, or raise Reject; pair with ``release``."""
        config = self._config
        ip = request.remote[0] if request.remote else ""
        if self._connects is not None and ip:
            wait = self._connects.hit(ip, trio.current_time())
            if wait is not None:
                retry = str(max(1, math.ceil(wait)))
                raise Reject(
                    429, "too many connection attempts from this address", {"Retry-After": retry}
                )
        if config.max_connections is not None and self._total >= config.max_connections:
            raise Reject(503, "server at connection capacity, retry later", {"Retry-After": "5"})
        per_ip = config.max_connections_per_ip
        if per_ip is not None and ip and self._per_ip[ip] >= per_ip:
            raise Reject(429, "too many connections from this address")
        self._total += 1
        self._per_ip[ip] += 1

    def release(self, request: Request) -> None:
        ip = request.remote[0] if request.remote else ""
        self._total -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    async def admit(self, request: Request) -> Admission:
        """Run the checks after ``reserve``; return the user and subprotocol.

        Raises:
            Reject: the request is refused; a crashing accept hook becomes a 500.
        """
        self._check_origin(request)
        subprotocol = self._choose_subprotocol(request)
        recover = None
        presented = request.query.get(RECOVER_PARAM)
        if presented is not None:
            try:
                recover = parse_recover(presented)
            except ValueError as exc:
                raise Reject(400, f"invalid {RECOVER_PARAM}: {exc}") from None
        user = None
        if self._accept_hook is not None:
            try:
                user = await self._accept_hook(request)
            except Reject:
                raise
            except Exception:
                logger.exception(
                    "accept hook failed for %s",
                    describe_request(request),
                    extra=request_fields(request),
                )
                raise Reject(500, "internal server error") from None
        return Admission(user, subprotocol, recover)

    def _check_origin(self, request: Request) -> None:
        allowed = self._config.allowed_origins
        if allowed is None:
            return
        origin = request.headers.get("origin")
        # Browsers always send Origin; other clients need not, and cross-site
        # hijacking is a browser attack, so a missing Origin is not refused.
        if origin is None:
            return
        ok = allowed(origin) if callable(allowed) else origin.lower().rstrip("/") in allowed
        if not ok:
            raise Reject(403, "origin not allowed")

    def _choose_subprotocol(self, request: Request) -> str | None:
        offered = request.subprotocols
        for name in self._config.subprotocols:  # the server's order of preference
            if name in offered:
                return name
        if self._config.require_subprotocol:
            supported = ", ".join(self._config.subprotocols)
            raise Reject(400, f"no supported subprotocol offered; supported: {supported}")
        return None


def bearer_auth(verify: Callable[[str], Any], *, query_param: str | None = "token") -> AcceptHook:
    """An accept hook that authenticates with a bearer token.

    The token comes from ``Authorization: Bearer <token>`` or, for browsers (which
    cannot set headers on a WebSocket), from the ``token`` query parameter. ``verify``
    (sync or async) returns the user, or ``None``/``False`` to refuse. Missing or
    refused tokens are answered 401 with ``WWW-Authenticate: Bearer``.

    Usage: ``app.accept(bearer_auth(check_token))``.
    """

    async def accept(request: Request) -> Any:
        token = None
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
        elif query_param is not None:
            token = request.query.get(query_param) or None
        challenge = {"WWW-Authenticate": "Bearer"}
        if token is None:
            raise Reject(401, "missing bearer token", challenge)
        user = verify(token)
        if inspect.isawaitable(user):
            user = await user
        if user is None or user is False:
            raise Reject(401, "invalid token", challenge)
        return user

    accept.__qualname__ = f"bearer_auth({getattr(verify, '__qualname__', verify)!s})"
    _BEARER_HOOKS[accept] = BearerScheme(query_param)
    return accept


class BearerScheme(NamedTuple):
    """How a hook made by :func:`bearer_auth` reads its token, for the app's contracts:
    the ``Authorization`` header, or the query parameter ``query_param`` (if any)."""

    query_param: str | None


#: The hooks ``bearer_auth`` made, and how each reads its token.
_BEARER_HOOKS: weakref.WeakKeyDictionary[AcceptHook, BearerScheme] = weakref.WeakKeyDictionary()


def bearer_scheme(hook: AcceptHook) -> BearerScheme | None:
    """How ``hook`` reads a bearer token, if :func:`bearer_auth` made it; else ``None``."""
    return _BEARER_HOOKS.get(hook)


def redact_query(items: tuple[tuple[str, str], ...]) -> str:
    """The query string with values of credential-like keys replaced by [REDACTED]."""
    safe = [
        (key, "[REDACTED]" if any(word in key.lower() for word in CREDENTIAL_KEYS) else value)
        for key, value in items
    ]
    return urlencode(safe, safe="[]")


def describe_request(request: Request) -> str:
    """``from HOST:PORT path=PATH?QUERY`` (``[HOST]:PORT`` for IPv6) with credentials
    redacted, for logs."""
    where = format_address(request.remote) or "?"
    query = redact_query(request.query_items)
    return f"from {where} path={request.path}{'?' + query if query else ''}"


def request_fields(request: Request) -> dict[str, Any]:
    """What a log record about ``request`` carries as ``extra=``, for JSON logs
    (``wsroute._logs``): path, query redacted as in ``describe_request``, address."""
    fields: dict[str, Any] = {"path": request.path, "remote": format_address(request.remote)}
    query = redact_query(request.query_items)
    if query:
        fields["query"] = query
    return fields
