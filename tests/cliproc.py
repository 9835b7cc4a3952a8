"""Running ``wsroute`` as a real child process, for the tests of the command line and
of whole processes: a run to completion, and a server whose log lines a test waits on.
Every wait is bounded."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

REPO = Path(__file__).resolve().parent.parent
# Upper bound for any one wait; each step normally takes well under a second.
TIMEOUT = 10.0


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSROUTE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory


async def wsroute_cli(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; ``script`` uses the console script, not ``-m``."""
    module = [sys.executable, "-m", "wsroute"]
    command = [str(Path(sys.executable).parent / "wsroute")] if script else module
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [*command, *args],
            cwd=cwd,
            env=env if env is not None else child_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wsroute: error: "), result.stderr
    for part in parts:
        assert part in lines[0]
    return lines[0]


class Server:
    """A ``wsroute run`` (or ``python app.py``) child process whose stderr is collected
    line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.eof = False
        self._changed = trio.Event()

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        buffer = b""
        async with self.process.stderr as stream:
            async for chunk in stream:
                *complete, buffer = (buffer + chunk).split(b"\n")
                self.lines += [line.decode() for line in complete]
                self._notify()
        if buffer:
            self.lines.append(buffer.decode())
        self.eof = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first stderr line matching ``pattern``, waiting for it to be logged."""
        with trio.move_on_after(TIMEOUT):
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                if self.eof:
                    break
                await self._changed.wait()
        raise AssertionError(f"no line matching {pattern!r} on stderr:\n{self.stderr}")

    async def wait_listening(self) -> int:
        return int((await self.wait_for(r"listening on ws://127\.0\.0\.1:(\d+) ")).group(1))

    async def exit_code(self, timeout: float = TIMEOUT) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start(nursery: trio.Nursery) -> AsyncIterator[StartServer]:
    """``server = await start(*args, cwd=..., env=...)`` runs ``python -m wsroute *args``,
    or ``python *args`` with ``script=True`` (``python app.py``)."""
    servers: list[Server] = []

    async def start_server(
        *args: str, cwd: Path, env: dict[str, str] | None = None, script: bool = False
    ) -> Server:
        command = [sys.executable, *args] if script else [sys.executable, "-m", "wsroute", *args]
        process = await trio.lowlevel.open_process(
            command,
            cwd=cwd,
            env=env if env is not None else child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = Server(process)
        servers.append(server)
        nursery.start_soon(server.read_stderr)
        return server

    try:
        yield start_server
    finally:
        for server in servers:
            if server.process.returncode is None:
                server.process.kill()
            with trio.CancelScope(shield=True):
                await server.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
