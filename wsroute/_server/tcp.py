"""Serving a runtime over TCP: listening until it is asked to stop, then its drain.

The address is bound in a thread (a host name may need resolving), each socket gets
an accept loop that starts the runtime's ``serve_stream`` for every connection in
one nursery, and a watcher aborts every connection if the server is cancelled. Once
the runtime is asked to stop, accepting ends and the connections get the drain's
deadline to close.
"""

from __future__ import annotations

import functools
import logging
import ssl

import trio

from .._errors import ListenError
from .listener import accept_loop, bind_sockets, listen, tls_wrapper
from .runtime import Runtime

logger = logging.getLogger("wsroute")


async def serve_tcp(
    runtime: Runtime,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
    announce: bool = True,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` until ``runtime.request_stop``, then drain and return.

    Reports the bound port through ``task_status`` (so port 0 works). Speaks TLS
    with ``ssl_context``; ``reuse_port`` shares the port with other processes
    (``listener.bind_sockets``); ``announce`` logs the ``listening on`` line
    (a worker of ``wsroute run --workers`` leaves it to its supervisor).

    Raises:
        ListenError: the address cannot be listened on.
    """
    try:
        sockets = await trio.to_thread.run_sync(
            functools.partial(bind_sockets, host, port, reuse_port=reuse_port)
        )
        listeners = [listen(sock) for sock in sockets]
    except OSError as error:
        raise ListenError(host, port, error) from error
    bound: int = listeners[0].socket.getsockname()[1]
    wrap = tls_wrapper(ssl_context) if ssl_context is not None else None
    hard_stop = trio.CancelScope()
    with hard_stop:
        async with trio.open_nursery() as connections:
            connections.start_soon(runtime.abort_when_cancelled)
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(
                        accept_loop, listener, connections, runtime.serve_stream, wrap
                    )
                logger.log(
                    logging.INFO if announce else logging.DEBUG,
                    "listening on %s (broker %s)",
                    url(host, bound, tls=ssl_context is not None),
                    runtime.broker_name,
                )
                task_status.started(bound)
                await runtime.stopped()
                accepting.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            hard_stop.deadline = runtime.drain()
            await runtime.all_streams_ended()
            connections.cancel_scope.cancel()  # the watcher: nothing left to abort


def url(host: str, port: int, *, tls: bool = False) -> str:
    """The URL clients connect to: ``ws://127.0.0.1:8000``, ``wss://[::1]:8443``."""
    shown = f"[{host}]" if ":" in host else host
    return f"{'wss' if tls else 'ws'}://{shown}:{port}"
