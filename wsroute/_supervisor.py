"""The supervisor of ``wsroute run --workers N`` and ``--reload``: worker processes
serving one port, restarted when they crash or when the app's files change.

::

    supervisor (binds the port, SO_REUSEPORT, not listening; watches files)
    ├── python -m wsroute._worker FD   worker 1: listens on the port, SO_REUSEPORT
    ├── ...
    └── python -m wsroute._worker FD   worker N

The supervisor binds the port before any worker starts, so port 0 is picked once for
all, a port in use fails once, and the port stays reserved while a worker restarts
(bound without ``SO_REUSEADDR``: only sockets with ``SO_REUSEPORT`` can join it).
Each worker is a child process in its own process group: Ctrl+C in a terminal
reaches the supervisor only, which forwards it. ``FD`` is the worker's end of a
socket pair, its link: the supervisor sends the parsed command line on it, then
``RESTART`` to drain with 1012; the worker answers one line once it listens; and a
link closed under a worker means its supervisor is gone (the worker drains and exits).

Rules (docs/cli.md says them to users):

- The first worker starts alone, the others once it listens: an app that cannot be
  loaded, listen or reach its broker fails once, with its own message, and the
  supervisor exits with the worker's status.
- A worker that exits unasked counts as a crash, whatever its status. It is started
  again after ``FIRST_BACKOFF`` seconds, doubling with each crash in a row up to
  ``MAX_BACKOFF``; a worker that lived ``HEALTHY_AFTER`` seconds starts the count anew.
- More than ``CRASH_LIMIT`` crashes (all workers together) within ``CRASH_WINDOW``
  seconds is a crash loop: the other workers drain and the supervisor exits with 1.
- The first SIGINT or SIGTERM is forwarded to every worker, which drains (1001,
  on_disconnect hooks); a second one kills the workers (SIGKILL) and exits with 1.
- With ``--reload`` (one worker), a change to a Python file drains the worker with
  1012 and starts a new one; a worker that fails waits for the next change instead.
- With ``--workers`` above 1 and metrics on, the supervisor makes a private directory
  where the workers share their metrics (``_server.workermetrics``), passes it on with
  the command line, keeps an exited worker's counters there, and removes it at the end.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import trio

from . import _reload
from ._errors import ListenError
from ._server import workermetrics
from ._server.listener import bind_sockets
from ._server.tcp import url

logger = logging.getLogger("wsroute")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 10.0
HEALTHY_AFTER = 30.0
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0

#: Supervisor to worker, after the command line: drain with 1012 and exit.
RESTART = b"R"
#: The command line's length, before it (then the pickled ``argparse.Namespace``).
_LENGTH = struct.Struct("!I")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def usage_problem(workers: int, reload: bool) -> str | None:
    """Why ``--workers``/``--reload`` cannot be served here, or None."""
    if reload and workers > 1:
        return (
            f"--reload restarts a single process: it cannot be combined with --workers"
            f" {workers} (use one or the other)"
        )
    if workers > 1 and (sys.platform != "linux" or not hasattr(socket, "SO_REUSEPORT")):
        return (
            f"--workers {workers} needs Linux: the workers share the port with SO_REUSEPORT,"
            f" which spreads connections among them only there (this is {sys.platform});"
            " run one process per port instead"
        )
    if reload and not hasattr(socket, "SO_REUSEPORT"):
        return f"--reload needs SO_REUSEPORT, which this system ({sys.platform}) lacks"
    return _reload.missing() if reload else None


def send_args(link: socket.socket, args: argparse.Namespace) -> None:
    data = pickle.dumps(args)
    link.sendall(_LENGTH.pack(len(data)) + data)


def receive_args(link: socket.socket) -> argparse.Namespace:
    """The command line the supervisor sent (blocking: before the worker's trio.run)."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = link.recv(size - len(data))
            if not chunk:
                raise EOFError("the supervisor closed the link")
            data += chunk
        return data

    (size,) = _LENGTH.unpack(exactly(_LENGTH.size))
    args = pickle.loads(exactly(size))
    assert isinstance(args, argparse.Namespace)
    return args


def supervise(args: argparse.Namespace, error: Callable[[str], None]) -> int:
    """Serve ``args`` (of ``wsroute run``) with worker processes; the exit status."""
    try:
        sockets = bind_sockets(args.host, args.port, reuse_port=True, reuse_addr=False)
    except OSError as exc:
        error(str(ListenError(args.host, args.port, exc)))
        return EXIT_ERROR
    try:
        port = sockets[0].getsockname()[1]
        supervisor = _Supervisor(args, port, error)
        return trio.run(supervisor.run)
    finally:
        for sock in sockets:
            sock.close()


class _Worker:
    """One worker's slot: the process in it now, and its record of crashes."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: trio.Process | None = None
        self.link: trio.SocketStream | None = None
        self.started_at = 0.0
        self.crashes_in_a_row = 0

    def describe(self) -> str:
        pid = self.process.pid if self.process is not None else "?"
        return f"worker {self.number} (pid {pid})"


class _Supervisor:
    def __init__(self, args: argparse.Namespace, port: int, error: Callable[[str], None]) -> None:
        self.args = argparse.Namespace(**vars(args))
        self.args.port = port  # port 0: the one picked, for every worker
        self.error = error
        self.reload = bool(args.reload)
        self.workers = [_Worker(n) for n in range(1, (1 if self.reload else args.workers) + 1)]
        self.code = EXIT_OK
        self.stopping = trio.Event()
        self.stop_signal = signal.SIGTERM
        self.crashes: collections.deque[float] = collections.deque()
        self.first_ready = trio.Event()
        self.ready = 0  # workers that listened at least once
        self.broker = "?"  # as the first worker that listened described it
        self.changed = trio.Event()  # a Python file changed (--reload)
        self.watch_stop = trio.Event()
        self.failure: str | None = None  # why the supervisor gave up: said last
        self.metrics_dir: str | None = None  # the workers' shared metrics, if any

    async def run(self) -> int:
        if len(self.workers) > 1 and getattr(self.args, "metrics_path", None) != "off":
            self.metrics_dir = workermetrics.make_directory()
        self.args.metrics_dir = self.metrics_dir
        try:
            return await self._run()
        finally:
            if self.metrics_dir is not None:
                workermetrics.remove_directory(self.metrics_dir)

    async def _run(self) -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, signals)
                if self.reload:
                    logger.info(
                        "watching %s for changes to Python files (--reload)",
                        os.path.abspath(self.args.app_dir),
                    )
                    await nursery.start(
                        _reload.watch, self.args.app_dir, self._files_changed, self.watch_stop
                    )
                async with trio.open_nursery() as slots:
                    first, *others = self.workers
                    slots.start_soon(self._keep, first)
                    if others:
                        await _first_of(self.first_ready, self.stopping)
                        if not self.stopping.is_set():
                            for worker in others:
                                slots.start_soon(self._keep, worker)
                self.watch_stop.set()
                nursery.cancel_scope.cancel()
        if self.failure is not None:
            self.error(self.failure)
        return self.code

    # -- one worker's life ---------------------------------------------------------------

    async def _keep(self, worker: _Worker) -> None:
        """Start ``worker``, and again after each crash (or change), until stopping."""
        while not self.stopping.is_set():
            changed = self.changed
            process = await self._start(worker)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._wait_ready, worker)
                if self.reload:
                    nursery.start_soon(self._restart_on_change, worker, changed)
                status = await process.wait()
                if self.metrics_dir is not None:  # at once: no other worker starts meanwhile
                    workermetrics.retire(self.metrics_dir, process.pid)
                nursery.cancel_scope.cancel()
            if worker.link is not None:
                await worker.link.aclose()
            if self.stopping.is_set():
                if status not in (0, -self.stop_signal) and self.code == EXIT_OK:
                    self.code = EXIT_ERROR  # it did not drain cleanly
                logger.info("%s %s", worker.describe(), _exit_status(status))
                return
            if self.reload:
                await self._after_reload_exit(worker, status, changed)
            elif not self.first_ready.is_set():
                self._failed_at_start(worker, status)
                return
            elif not await self._crashed(worker, status):
                return

    async def _start(self, worker: _Worker) -> trio.Process:
        parent, child = socket.socketpair()
        try:
            worker.process = process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "wsroute._worker", str(child.fileno()), self.args.app],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                process_group=0,  # a terminal's Ctrl+C is the supervisor's to forward
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        worker.started_at = trio.current_time()
        logger.info("started %s", worker.describe())
        send_args(parent, self.args)  # small: fits the socket's buffer
        worker.link = trio.SocketStream(trio.socket.from_stdlib_socket(parent))
        if self.stopping.is_set():  # the stop came while it was being started
            process.send_signal(self.stop_signal)
        return process

    async def _wait_ready(self, worker: _Worker) -> None:
        """Wait for the worker's line saying it listens (never comes if it fails)."""
        assert worker.link is not None
        answer = b""
        try:
            while not answer.endswith(b"\n"):
                chunk = await worker.link.receive_some(4096)
                if not chunk:
                    return
                answer += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        self.ready += 1
        if self.ready == 1:
            self.broker = str(json.loads(answer)["broker"])
            self.first_ready.set()
        if self.ready < len(self.workers):
            logger.info("%s is serving", worker.describe())
        elif self.ready == len(self.workers):
            mode = "--reload" if self.reload else f"{len(self.workers)} workers"
            address = url(self.args.host, self.args.port, tls=bool(self.args.ssl_certfile))
            logger.info("listening on %s (broker %s, %s)", address, self.broker, mode)
        else:
            logger.info("%s is serving again", worker.describe())

    def _failed_at_start(self, worker: _Worker, status: int) -> None:
        """The first worker exited before it listened: the app cannot serve."""
        self.code = status if status in (EXIT_ERROR, EXIT_USAGE) else EXIT_ERROR
        if status != EXIT_USAGE:  # a usage error's one line says it all
            self.failure = f"{worker.describe()} {_exit_status(status)} before it listened"
        self._stop(None)

    async def _crashed(self, worker: _Worker, status: int) -> bool:
        """Count a crash and wait the worker's backoff; False: a crash loop, stopping."""
        now = trio.current_time()
        if now - worker.started_at >= HEALTHY_AFTER:
            worker.crashes_in_a_row = 0
        self.crashes.append(now)
        while now - self.crashes[0] > CRASH_WINDOW:
            self.crashes.popleft()
        if len(self.crashes) > CRASH_LIMIT:
            self.code = EXIT_ERROR
            self.failure = (
                f"workers crashed {len(self.crashes)} times within {CRASH_WINDOW:g} s (more"
                f" than {CRASH_LIMIT}), last {worker.describe()}, which {_exit_status(status)};"
                " giving up: the other workers drain, then the supervisor exits"
            )
            self._stop(None)
            return False
        delay = min(FIRST_BACKOFF * 2**worker.crashes_in_a_row, MAX_BACKOFF)
        worker.crashes_in_a_row += 1
        logger.error(
            "%s %s; starting it again in %.1f s", worker.describe(), _exit_status(status), delay
        )
        with trio.move_on_after(delay):
            await self.stopping.wait()
        return True

    # -- --reload ------------------------------------------------------------------------

    def _files_changed(self, paths: list[str]) -> None:
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        logger.info("changed: %s%s; restarting the worker", ", ".join(paths[:3]), more)
        self.changed.set()

    async def _restart_on_change(self, worker: _Worker, changed: trio.Event) -> None:
        await changed.wait()
        self.changed = trio.Event()
        if worker.link is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await worker.link.send_all(RESTART)

    async def _after_reload_exit(self, worker: _Worker, status: int, changed: trio.Event) -> None:
        """A reloaded worker ended: asked to (start the next at once), or not (wait
        for a change first: it would fail the same way)."""
        if changed.is_set():
            return
        logger.error(
            "%s %s; waiting for a change to a Python file to start it again",
            worker.describe(),
            _exit_status(status),
        )
        await _first_of(self.changed, self.stopping)
        self.changed = trio.Event()

    # -- signals ---------------------------------------------------------------------

    async def _watch_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self.stopping.is_set():
                logger.info("received %s, stopping the workers gracefully", name)
                self._stop(signum)
                continue
            logger.warning("received %s again, killing the workers and exiting now", name)
            self.code = EXIT_ERROR
            for worker in self.workers:
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.kill()

    def _stop(self, signum: int | None) -> None:
        """Stop every worker: forward ``signum`` (SIGTERM when the supervisor itself
        decided to stop), so that each drains."""
        self.stopping.set()
        self.watch_stop.set()
        self.stop_signal = signal.Signals(signum or signal.SIGTERM)
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(self.stop_signal)


async def _first_of(*events: trio.Event) -> None:
    """Wait until one of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


def _exit_status(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
