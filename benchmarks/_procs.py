"""Server and client processes: start pinned, wait until ready, measure, always stop.

Every process is started in its own session, remembered in ``_LIVE`` and killed
(its whole process group) by :func:`stop_all`, which the runner calls on every exit
path, Ctrl+C included. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
SERVER_CPU = "0"
CLIENT_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_LIVE: list[subprocess.Popen[Any]] = []


class BenchError(Exception):
    """A run failed (server died, client failed or timed out); the message says why."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server (``{port}`` in ``command`` is replaced), for the report too.

    ``client`` holds load generator options every run against this server adds (the
    wire its clients speak: ``msgpack``, ``deflate``).
    """

    name: str
    command: tuple[str, ...]
    cwd: Path
    settings: str
    client: tuple[tuple[str, str], ...] = ()

    def argv(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.command]


@dataclass
class Server:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    pid: int
    port: int
    log: Path
    children: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def rss_kib(self) -> int:
        return read_rss_kib(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``, read from /proc/net/tcp.

    Not probed with a connection: a server may hold an unfinished handshake open until
    its handshake timeout and make its shutdown wait for it.
    """
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        next(table)
        return any(
            fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
            for fields in (line.split() for line in table)
        )


def _spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(list(cmd), start_new_session=True, **kwargs)
    _LIVE.append(proc)
    return proc


def _kill(proc: subprocess.Popen[Any], grace: float) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    if proc in _LIVE:
        _LIVE.remove(proc)


def stop_all() -> None:
    """Kill every process this runner started and that is still running."""
    for proc in list(_LIVE):
        _kill(proc, grace=2.0)


def _child_pid(pid: int, deadline: float) -> int:
    """The single child of ``pid`` (the server started by py-spy)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    while time.monotonic() < deadline:
        try:
            children = path.read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise BenchError(f"process {pid} started no child")


def start_server(
    spec: ServerSpec,
    log_dir: Path,
    *,
    wrap: Sequence[str] = (),
    timeout: float = 30.0,
) -> Server:
    """Start ``spec`` pinned to the server CPU; return once it accepts TCP connections.

    ``wrap`` is a command the server runs under (py-spy); the measured pid is then the
    wrapper's child.
    """
    port = free_port()
    log = log_dir / f"{spec.name}-{port}.log"
    cmd = ["taskset", "-c", SERVER_CPU, *wrap, *spec.argv(port)]
    with open(log, "wb") as out:
        proc = _spawn(cmd, cwd=spec.cwd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    pid = _child_pid(proc.pid, deadline) if wrap else proc.pid
    server = Server(spec, proc, pid, port, log)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"{spec.name} server exited with {proc.returncode} before listening:\n"
                f"{server.log_tail()}"
            )
        if _listening(port):
            return server
        time.sleep(0.05)
    stop_server(server)
    raise BenchError(f"{spec.name} server did not listen on {port} within {timeout:.0f} s")


def stop_server(server: Server) -> None:
    """SIGTERM the server (graceful), SIGKILL it after 5 s."""
    proc = server.proc
    if proc.poll() is None and server.pid != proc.pid:
        # Under py-spy: stop the server itself so py-spy writes its profile and exits.
        try:
            os.kill(server.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    _kill(proc, grace=5.0)
    with contextlib.suppress(OSError):
        if server.log.stat().st_size == 0:
            server.log.unlink()


def run_loadgen(
    node: str,
    scenario: str,
    server: Server,
    options: dict[str, float | str],
    *,
    timeout: float,
    cpu: str = CLIENT_CPU,
    on_event: Callable[[dict[str, Any], IO[str]], None] | None = None,
) -> dict[str, Any]:
    """Run ``loadgen.mjs SCENARIO`` pinned to ``cpu``; return its result line.

    With ``procs`` in ``options`` the load generator starts its other processes
    itself (pinned to ``cpus``) and still prints one result line. ``on_event``
    receives each ``{"event": ...}`` line with the client's stdin, to answer it (the
    idle scenario waits for a line after each event).
    """
    cmd = [
        "taskset",
        "-c",
        cpu,
        node,
        str(HERE / "loadgen.mjs"),
        scenario,
        "--url",
        server.url,
        "--server-pid",
        str(server.pid),
        "--clk-tck",
        str(CLK_TCK),
        "--max-seconds",
        str(int(timeout)),
    ]
    for key, value in options.items():
        cmd += [f"--{key}", str(value)]
    proc = _spawn(
        cmd,
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    result: dict[str, Any] | None = None
    # The client enforces --max-seconds itself; this is the backstop if it hangs.
    watchdog = threading.Timer(timeout + 15, _kill, args=(proc, 1.0))
    watchdog.start()
    try:
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "event" in message:
                if on_event is not None:
                    on_event(message, proc.stdin)
            else:
                result = message
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        watchdog.cancel()
        stderr = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        _kill(proc, grace=1.0)
    if proc.returncode != 0 or result is None:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.spec.name} server died during {scenario} "
                f"(exit {server.proc.returncode}):\n{server.log_tail()}"
            )
        raise BenchError(
            f"load generator failed in {scenario} against {server.spec.name} "
            f"(exit {proc.returncode}):\n{stderr.strip()[-2000:]}"
        )
    return result
