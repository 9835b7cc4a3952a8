"""The TCP listeners and their accept loop: ``trio.open_tcp_listeners`` and
``trio.serve_listeners``, with a shared port and TLS, minus two costs per connection.

``bind_sockets`` binds like trio (every address of the host, ``SO_REUSEADDR``, IPv6
sockets IPv6-only) and, with ``reuse_port``, sets ``SO_REUSEPORT``: then several
processes listen on one port and the kernel spreads new connections among them
(``wsroute run --workers``). With port 0, every address gets the port the first got.

trio's loop runs each handler inside a wrapper task function that closes the stream
with ``aclose_forcefully`` (a cancel scope, cancelled, and a checkpoint) and keeps its
frame on every connection's stack for the connection's life; and trio's listener
drops the peer's address that ``accept`` returned, so the server would ask the
kernel for it again. Here the handler is started directly with the stream and the
address, and closes the stream itself. The errors are trio's: the same ones are
ignored, and running out of file descriptors or memory is logged and retried after
100 ms.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

logger = logging.getLogger("wsroute")

Serve = Callable[[trio.abc.Stream, tuple[str, int]], Awaitable[object]]

#: trio's default: the system's maximum (Linux keeps the backlog in 16 bits).
BACKLOG = 0xFFFF

#: Out of a resource: say so, wait and retry (trio.serve_listeners' set).
_CAPACITY = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
_RETRY_AFTER = 0.1
#: A connection that went away before it was accepted, and the like (trio's set).
_IGNORED = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)


def bind_sockets(
    host: str, port: int, *, reuse_port: bool = False, reuse_addr: bool = True
) -> list[socket.socket]:
    """Sockets bound to ``port`` on every address of ``host``, not yet listening.

    Blocking (name resolution): call it from a thread under trio. Without
    ``reuse_addr`` (``SO_REUSEADDR``), a socket that never listens still keeps
    ``port`` from any process that does not set ``SO_REUSEPORT``: the supervisor of
    ``--workers`` reserves the port so.

    Raises:
        OSError: the address cannot be resolved or bound, or ``reuse_port`` was asked
            of a system without ``SO_REUSEPORT``.
    """
    reuse: int | None = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port and reuse is None:
        raise OSError(errno.ENOPROTOOPT, "this system has no SO_REUSEPORT")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    unsupported: list[OSError] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno != errno.EAFNOSUPPORT:
                    raise
                unsupported.append(exc)  # an IPv6 address on a host without IPv6
                continue
            sockets.append(sock)
            if reuse_addr and os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and reuse is not None:
                sock.setsockopt(socket.SOL_SOCKET, reuse, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EAFNOSUPPORT, f"this system supports no address of {host!r}")
    return sockets


def listen(sock: socket.socket) -> trio.SocketListener:
    """A bound socket from ``bind_sockets`` as a trio listener."""
    sock.listen(BACKLOG)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def tls_wrapper(context: ssl.SSLContext) -> Callable[[trio.SocketStream], trio.abc.Stream]:
    """Wraps each accepted stream in TLS. The TLS handshake happens later, when the
    connection's task first reads, so one slow or broken client never holds up the
    accept loop, and the handshake timeout bounds it (``opening.Opening.read``).
    ``https_compatible``: a client may close the TCP connection without TLS's
    close_notify, as browsers and most clients do once the WebSocket is closed."""

    def wrap(stream: trio.SocketStream) -> trio.abc.Stream:
        return trio.SSLStream(stream, context, server_side=True, https_compatible=True)

    return wrap


async def accept_loop(
    listener: trio.SocketListener,
    handler_nursery: trio.Nursery,
    serve: Serve,
    wrap: Callable[[trio.SocketStream], trio.abc.Stream] | None = None,
) -> NoReturn:
    """Accept connections on ``listener`` until cancelled, starting
    ``serve(stream, (host, port))`` for each in ``handler_nursery``; ``wrap``, if
    given, turns the TCP stream into the one served (TLS).

    Raises:
        trio.ClosedResourceError: the listener was closed.
        OSError: ``accept`` failed in a way trio does not ignore either.
    """
    sock = listener.socket
    while True:
        try:
            connection, address = await sock.accept()
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise trio.ClosedResourceError("the listener was closed") from None
            if exc.errno in _CAPACITY:
                logger.error(
                    "accept failed: %s (%s); retrying in %.1f s",
                    errno.errorcode[exc.errno],
                    os.strerror(exc.errno),
                    _RETRY_AFTER,
                )
                await trio.sleep(_RETRY_AFTER)
            elif exc.errno not in _IGNORED:
                raise
            continue
        stream = trio.SocketStream(connection)
        served = stream if wrap is None else wrap(stream)
        handler_nursery.start_soon(serve, served, (str(address[0]), int(address[1])))
