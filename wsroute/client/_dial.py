"""Opening one WebSocket connection: TCP, then TLS, then the WebSocket handshake.

trio-websocket's ``open_websocket_url`` leaves the TLS handshake to happen inside its
reader task, which takes a failed one for a dropped connection and never reports
it: the caller waits its whole ``connect_timeout`` and learns nothing. So the client
opens the stream itself and completes the TLS handshake before anything else, where
a certificate the client does not trust fails at once, by name; then hands the
stream to trio-websocket's public ``wrap_client_stream`` for the WebSocket part.
The rest behaves as ``open_websocket_url``: the same exceptions, the connection
closed (within ``disconnect_timeout``) when the block ends.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
import trio_websocket

from .._util import collapse_exception_group


class TLSFailure(Exception):
    """The TLS handshake failed; ``verification``: the server's certificate is not
    one the client trusts (untrusted issuer, expired, for another host)."""

    def __init__(self, message: str, *, verification: bool) -> None:
        super().__init__(message)
        self.verification = verification


class Target:
    """Where a ``ws://`` or ``wss://`` URL points."""

    __slots__ = ("host", "port", "resource", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"a WebSocket URL starts with ws:// or wss://, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"the WebSocket URL {url!r} has no host")
        self.tls = parts.scheme == "wss"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        resource = parts.path or "/"  # RFC 7230: an empty path is sent as "/"
        self.resource = f"{resource}?{parts.query}" if parts.query else resource

    @property
    def host_header(self) -> str:
        """``Host``: the port only when it is not the scheme's default, an IPv6
        address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.tls else 80) else f"{host}:{self.port}"


async def _open_stream(
    target: Target, context: ssl.SSLContext | None
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """The TCP stream, with TLS completed over it for ``wss://``.

    Raises:
        TLSFailure: the TLS handshake failed.
        OSError: no TCP connection.
    """
    if not target.tls:
        return await trio.open_tcp_stream(target.host, target.port)
    if context is None:
        context = ssl.create_default_context()
    stream = await trio.open_ssl_over_tcp_stream(
        target.host, target.port, ssl_context=context, https_compatible=True
    )
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        cause = exc.__cause__
        where = f"{target.host}:{target.port}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise TLSFailure(
                f"the TLS certificate of {where} failed verification:"
                f" {cause.verify_message or cause}. Pass connect(ssl_context=...) a context"
                " that trusts the certificate's issuer, or fix the server's certificate",
                verification=True,
            ) from cause
        raise TLSFailure(
            f"the TLS handshake with {where} failed: {cause or exc}", verification=False
        ) from exc
    except BaseException:  # cancelled: out of time
        await trio.aclose_forcefully(stream)
        raise
    return stream


@asynccontextmanager
async def open_websocket(
    url: str,
    ssl_context: ssl.SSLContext | None,
    *,
    subprotocols: Iterable[str],
    extra_headers: list[tuple[bytes, bytes]],
    max_message_size: int,
    connect_timeout: float,
    disconnect_timeout: float,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """One WebSocket connection to ``url`` for the length of the block.

    Raises:
        ValueError: ``url`` is not a WebSocket URL, or has an ``ssl_context`` with
            ``ws://``.
        TLSFailure: the TLS handshake failed (at once, not at ``connect_timeout``).
        trio_websocket.ConnectionRejected: the server refused the upgrade.
        trio_websocket.HandshakeError: no connection within ``connect_timeout``
            (``ConnectionTimeout``), or it broke during the handshake.
        OSError: no TCP connection.
    """
    target = Target(url)
    if ssl_context is not None and not target.tls:
        raise ValueError(f"an ssl_context is for wss:// URLs, not {url!r}")
    # The reader task's errors (a refusal among them) come out of the nursery alone,
    # not in a group, as open_websocket_url raises them.
    with collapse_exception_group():
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(connect_timeout) as deadline:
                stream = await _open_stream(target, ssl_context)
                try:
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,
                        target.host_header,
                        target.resource,
                        subprotocols=subprotocols,
                        extra_headers=extra_headers,
                        max_message_size=max_message_size,
                    )
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
            if deadline.cancelled_caught:  # the stream, if any, is closed above
                raise trio_websocket.ConnectionTimeout
            try:
                yield ws
            finally:
                # The reader task ends by itself once the stream is closed; it is
                # not cancelled, since it may be completing a close begun elsewhere
                # (Client.aclose waits for that).
                try:
                    with trio.fail_after(disconnect_timeout):
                        await ws.aclose()
                except trio.TooSlowError:
                    raise trio_websocket.DisconnectionTimeout from None
