"""Before a session: TLS, the HTTP request, plain GETs, refusals.

``Opening.read`` takes a new stream as far as an upgrade request worth admitting: it
completes the TLS handshake, reads the request, takes the client's address and scheme
from a trusted proxy's headers, answers a request for no upgrade from the app's plain
routes, and logs a malformed upgrade. Admission and the 101 are the runtime's. All of
it runs under the handshake deadline the runtime sets, so it never waits on its own.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .._config import Config
from .._errors import Reject
from .._http import METHODS, HTTPRoutes, Response, as_response, method_not_allowed, not_an_upgrade
from .._proxy import TrustedProxies, format_address, resolve
from .._request import Request
from .._wire.handshake import PlainRequest, Refusal, UpgradeRequest
from .admission import describe_request, request_fields
from .transport import Transport

logger = logging.getLogger("wsroute")


class Opening:
    """What a serving needs to read new streams: its options, trusted proxies and
    plain-GET routes."""

    __slots__ = ("_trusted", "config", "http")

    def __init__(self, config: Config, http: HTTPRoutes) -> None:
        self.config = config
        self.http = http
        # Whose X-Forwarded-For / Forwarded headers give the client's address.
        trusted = TrustedProxies.parse(config.forwarded_allow_ips)
        self._trusted = trusted if config.proxy_headers else None

    async def read(
        self, stream: trio.abc.Stream, remote: tuple[str, int] | None
    ) -> tuple[Transport, UpgradeRequest, Request] | None:
        """Read the upgrade request on ``stream``; ``None`` once a plain request is
        answered, or when there is no valid upgrade request to admit."""
        if remote is None:
            remote = _peer_address(stream)  # now: a refused upgrade may close the socket
        scheme = "ws"
        if isinstance(stream, trio.SSLStream):
            if not await _tls_handshake(stream, remote):
                return None
            scheme = "wss"
        ws = Transport(stream, max_message_size=self.config.max_message_size)
        upgrade = await ws.read_request()
        if isinstance(upgrade, UpgradeRequest | PlainRequest) and self._trusted is not None:
            remote, scheme = resolve(remote, upgrade.headers, self._trusted, scheme)
        if isinstance(upgrade, PlainRequest):
            await self._answer_plain(ws, upgrade, remote, scheme)
            return None
        if not isinstance(upgrade, UpgradeRequest):
            _log_refused(upgrade, remote)
            return None
        request = Request.build(
            upgrade.target,
            upgrade.headers,
            remote=remote,
            subprotocols=upgrade.subprotocols,
            scheme=scheme,
        )
        return ws, upgrade, request

    async def _answer_plain(
        self, ws: Transport, plain: PlainRequest, remote: tuple[str, int] | None, scheme: str
    ) -> None:
        """Answer a request that asks for no upgrade from the app's plain routes
        (``_http``), then close the connection."""
        request = Request.build(plain.target, plain.headers, remote=remote, scheme=scheme)
        if plain.method not in METHODS:
            response = method_not_allowed()
        else:
            handler, mount, rest = self.http.find(request.path)
            try:
                if handler is not None:
                    response = as_response(await handler(request))
                elif mount is not None:
                    response = await mount(rest, request) or Response("not found\n", 404)
                else:
                    response = not_an_upgrade()
            except Exception:
                logger.exception(
                    "%s %s failed",
                    plain.method,
                    describe_request(request),
                    extra=request_fields(request),
                )
                response = Response("internal server error\n", 500)
        if logger.isEnabledFor(logging.INFO):
            fields = request_fields(request) | {"method": plain.method, "status": response.status}
            logger.info(
                "%s %s %d", plain.method, describe_request(request), response.status, extra=fields
            )
        await ws.answer_plain(response.encode(head=plain.method == "HEAD"))


async def refuse(ws: Transport, request: Request, refusal: Reject) -> None:
    """Log ``refusal`` and answer the upgrade request with it."""
    logger.info(
        "refused %s: %d %s",
        describe_request(request),
        refusal.status,
        refusal.message,
        extra=request_fields(request) | {"status": refusal.status},
    )
    headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers]
    await ws.refuse(refusal.status, headers, refusal.message.encode())


def _log_refused(refusal: Refusal | None, remote: tuple[str, int] | None) -> None:
    """Log a request refused before it was read whole (``None``: the peer left)."""
    peer = format_address(remote) or "?"
    fields: dict[str, object] = {"remote": format_address(remote)}
    if refusal is None:
        why = "closed before sending a request"
    else:
        fields["status"] = refusal.status
        # A head too large may be a valid request, too large for this server.
        what = "" if refusal.status == 431 else "not a valid WebSocket upgrade request: "
        why = f"{refusal.status} {what}{refusal.message}"
    logger.info("refused an upgrade from %s: %s", peer, why, extra=fields)


def _peer_address(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The client's address, read once (trio-websocket's ``remote`` reads it again and
    parses it into an ``ip_address``: measurable at thousands of connections/s)."""
    if isinstance(stream, trio.SocketStream):
        try:
            host, port, *_ = stream.socket.getpeername()
        except OSError:  # already closed
            return None
        return (str(host), int(port))
    return None


async def _tls_handshake(stream: trio.SSLStream[Any], remote: tuple[str, int] | None) -> bool:
    """The TLS handshake, under the caller's handshake deadline; whether it
    succeeded. A client that speaks plain HTTP to the TLS port, or TLS that fails,
    costs only its own connection."""
    try:
        await stream.do_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        peer = format_address(remote) or "?"
        logger.info("TLS handshake with %s failed: %s", peer, exc.__cause__ or exc)
        return False
    return True
