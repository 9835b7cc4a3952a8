"""``python -m wsroute._worker FD APP``: one worker process of ``wsroute run
--workers`` or ``--reload``, started by ``wsroute._supervisor``.

``FD`` is the worker's end of the link to its supervisor (``APP`` only names the
worker in ``ps``). The worker reads its command line from the link, then serves as
``wsroute run`` does, in this process, with three differences: it shares the port
with the other workers (``SO_REUSEPORT``), it tells the supervisor when it listens
rather than logging the ``listening`` line, and it drains when the supervisor asks
it to restart (1012) or goes away (1001).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import ssl
import sys

import trio

from ._app import App
from ._cli import run_as_worker
from ._supervisor import RESTART, receive_args

logger = logging.getLogger("wsroute")


class _Link:
    """The worker's end of the link to its supervisor."""

    def __init__(self, sock: socket.socket, metrics_dir: str | None) -> None:
        self.sock = sock
        self.metrics_dir = metrics_dir  # where the workers share their metrics

    def serve(self, app: App, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        """``App.run``, as a worker: until a signal, a restart, or the supervisor's end."""
        trio.run(
            functools.partial(app._serve_until_signal, again_exits=False),
            functools.partial(self._serve, app, host, port, ssl_context),
        )

    async def _serve(
        self, app: App, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> None:
        link = trio.SocketStream(trio.socket.from_stdlib_socket(self.sock))
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[int]) -> None:
                await app._serve(
                    host,
                    port,
                    ssl_context=ssl_context,
                    reuse_port=True,
                    announce=False,
                    metrics_dir=self.metrics_dir,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            bound = await nursery.start(serve)
            ready = {"port": bound, "broker": app.broker.describe()}
            # If the supervisor is gone, _obey sees it.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await link.send_all(json.dumps(ready).encode() + b"\n")
            # Only now: a request that came while the app started waits in the link.
            nursery.start_soon(self._obey, link, app)

    @staticmethod
    async def _obey(link: trio.SocketStream, app: App) -> None:
        while True:
            try:
                data = await link.receive_some(64)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                logger.warning("the supervisor is gone: shutting down")
                app.shutdown()
                return
            if RESTART in data:
                logger.info("restarting: closing connections with 1012")
                app.shutdown(restart=True)


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    try:
        args = receive_args(sock)
    except EOFError:
        return 1  # the supervisor died before it said what to run
    return run_as_worker(args, _Link(sock, getattr(args, "metrics_dir", None)).serve)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
