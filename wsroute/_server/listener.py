"""The TCP accept loop: ``trio.serve_listeners``, minus two costs per connection.

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
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

logger = logging.getLogger("wsroute")

Serve = Callable[[trio.SocketStream, tuple[str, int]], Awaitable[object]]

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


async def accept_loop(
    listener: trio.SocketListener, handler_nursery: trio.Nursery, serve: Serve
) -> NoReturn:
    """Accept connections on ``listener`` until cancelled, starting
    ``serve(stream, (host, port))`` for each in ``handler_nursery``.

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
        handler_nursery.start_soon(serve, stream, (str(address[0]), int(address[1])))
