"""``wsroute run --workers N`` and ``--reload`` (wsroute/_supervisor.py,
wsroute/_worker.py, wsroute/_reload.py), as real processes.

Workers share a real Redis (tests/redisproc.py) and real clients connect: the
independent `websockets` client (tests/wsclient.py) and wsroute's own. Each client
asks its worker's pid (the ``pid`` handler), so a test knows which worker serves it.
Every wait is bounded and every process is killed in the end (tests/cliproc.py).
"""

from __future__ import annotations

import os
import re
import signal
from argparse import Namespace
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

import wsroute.client
from wsroute._supervisor import _Supervisor, _Worker

from .cliproc import (
    Server,
    StartServer,
    assert_one_line_error,
    child_env,
    free_port,
    start,
    write,
    wsroute_cli,
)
from .redisproc import RedisServer, redis_server
from .tlstools import Certs, certs
from .wsclient import WSClient, connect

__all__ = ["certs", "redis_server", "start"]  # fixtures, imported to be found

TIMEOUT = 10.0

APP = """
import logging
import os

import trio

from wsroute import App, Connection

app = App(shutdown_timeout=10)
log = logging.getLogger("testapp")


@app.direct("pid")
async def pid() -> int:
    return os.getpid()


@app.direct("ping")
async def ping() -> str:
    return "pong"


@app.broadcast("say")
async def say(n: int) -> int:
    return n


@app.direct("sleep")
async def sleep(seconds: float) -> str:
    log.info("handler sleeping %s in %d", seconds, os.getpid())
    await trio.sleep(seconds)
    return "slept"


@app.on_disconnect
async def bye(conn: Connection) -> None:
    log.info("on_disconnect hook ran for %s in %d", conn.id, os.getpid())


if os.environ.get("TESTAPP_CRASH_AFTER"):

    @app.lifespan
    async def crash_soon(app):
        async def crash() -> None:
            await trio.sleep(float(os.environ["TESTAPP_CRASH_AFTER"]))
            os._exit(3)

        app.start_soon(crash)
        yield
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "project", {"app.py": APP})


async def run_workers(
    start: StartServer, app_dir: Path, count: int, *args: str, env: dict[str, str] | None = None
) -> tuple[Server, int, set[int]]:
    """A supervisor of ``count`` workers: the server, its port, the workers' pids."""
    flags = ["--workers", str(count), "--port", "0", *args]
    server = await start("run", "app:app", *flags, cwd=app_dir, env=env)
    port = await server.wait_listening()
    pids = {int(pid) for pid in re.findall(r"started worker \d+ \(pid (\d+)\)", server.stderr)}
    assert len(pids) == count, server.stderr
    return server, port, pids


async def clients_on_workers(
    stack: AsyncExitStack, port: int, count: int, **kwargs: object
) -> dict[int, list[WSClient]]:
    """``count`` clients, by the pid of the worker serving each."""
    by_pid: dict[int, list[WSClient]] = {}
    for _ in range(count):
        client = await stack.enter_async_context(connect(port, **kwargs))
        by_pid.setdefault((await client.request("pid"))["data"], []).append(client)
    return by_pid


async def says(client: WSClient, count: int) -> list[int]:
    """The data of the next ``count`` ``say`` events (replies are skipped)."""
    found = []
    with trio.fail_after(TIMEOUT):
        while len(found) < count:
            frame = await client.recv()
            if frame.get("type") == "say" and "ok" not in frame:
                found.append(frame["data"])
    return found


async def wait_numsub(redis: RedisServer, expected: int) -> None:
    with trio.fail_after(TIMEOUT):
        while (await redis.numsub("wsroute:all"))["wsroute:all"] != expected:
            await trio.sleep(0.02)


# -- --workers ---------------------------------------------------------------------------


async def test_a_killed_worker_is_restarted_and_a_broadcast_still_reaches_everyone_once(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    server, port, pids = await run_workers(
        start, app_dir, 4, "--broker", redis_server.url, "--log-level", "info"
    )
    assert len(re.findall(r"listening on ws://", server.stderr)) == 1
    async with AsyncExitStack() as stack:
        # 12 clients on 4 workers: all on one has a chance of 4 / 4^12.
        by_pid = await clients_on_workers(stack, port, 12)
        assert set(by_pid) <= pids and len(by_pid) >= 2
        victim = max(by_pid, key=lambda pid: len(by_pid[pid]))
        os.kill(victim, signal.SIGKILL)
        for client in by_pid.pop(victim):
            assert (await client.wait_closed())[0] == 1006
        killed = await server.wait_for(
            rf"ERROR worker (\d+) \(pid {victim}\) was killed by SIGKILL; starting it again"
            r" in 0\.1 s$"
        )
        replaced = await server.wait_for(rf"worker {killed[1]} \(pid (\d+)\) is serving again")
        assert int(replaced[1]) not in pids
        # The others were not disturbed: the same connections, the same workers.
        for pid, clients in by_pid.items():
            for client in clients:
                assert (await client.request("pid"))["data"] == pid
        # New connections may reach the new worker too; then everyone hears a
        # broadcast exactly once (a second copy of 1 would come before 2).
        for pid, clients in (await clients_on_workers(stack, port, 4)).items():
            by_pid.setdefault(pid, []).extend(clients)
        everyone = [client for clients in by_pid.values() for client in clients]
        await wait_numsub(redis_server, len(by_pid))
        sender = everyone[0]
        # Sent without waiting for the replies, which says() skips.
        await sender.send({"type": "say", "id": 101, "data": 1})
        await sender.send({"type": "say", "id": 102, "data": 2})
        for client in everyone:
            assert await says(client, 2) == [1, 2]
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0


async def test_sigterm_drains_every_worker(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    server, port, pids = await run_workers(start, app_dir, 2, "--broker", redis_server.url)
    async with AsyncExitStack() as stack:
        by_pid = await clients_on_workers(stack, port, 8)
        server.signal(signal.SIGTERM)
        for clients in by_pid.values():
            for client in clients:
                assert await client.wait_closed() == (1001, "server shutting down")
    assert await server.exit_code() == 0
    await server.wait_for(r"INFO received SIGTERM, stopping the workers gracefully$")
    for pid, clients in by_pid.items():
        hooks = re.findall(rf"on_disconnect hook ran for \S+ in {pid}$", server.stderr, re.M)
        assert len(hooks) == len(clients)
    for pid in pids:
        await server.wait_for(rf"worker \d+ \(pid {pid}\) exited with status 0$")


async def test_workers_signalled_with_their_supervisor_drain_as_under_systemd(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    # systemd's default KillMode=control-group sends SIGTERM to every process of the
    # service: each worker gets it from systemd and again from its supervisor.
    server, port, pids = await run_workers(start, app_dir, 2, "--broker", redis_server.url)
    async with connect(port) as client:
        await client.send({"type": "sleep", "id": 1, "data": 1.0})
        await server.wait_for("handler sleeping 1.0")
        server.signal(signal.SIGTERM)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        with trio.fail_after(TIMEOUT):
            assert (await client.recv())["data"] == "slept"
        assert await client.wait_closed() == (1001, "server shutting down")
    assert await server.exit_code() == 0
    for pid in pids:
        await server.wait_for(rf"worker \d+ \(pid {pid}\) exited with status 0$")
    assert "exiting now" not in server.stderr


async def test_a_second_signal_kills_the_workers_and_exits_1(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    server, port, pids = await run_workers(start, app_dir, 2, "--broker", redis_server.url)
    async with connect(port) as client:
        await client.send({"type": "sleep", "id": 1, "data": 30.0})
        await server.wait_for("handler sleeping 30.0")
        server.signal(signal.SIGTERM)
        await server.wait_for(r"shutting down: closing 1 connection\(s\), waiting up to 10\.0 s")
        server.signal(signal.SIGTERM)
        # Well within the handler's 30 s and the app's 10 s shutdown_timeout.
        assert await server.exit_code(timeout=3) == 1
    await server.wait_for(r"WARNING received SIGTERM again, killing the workers and exiting now$")
    for pid in pids:
        assert not alive(pid)


async def test_workers_drain_by_themselves_when_the_supervisor_is_killed(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    server, port, pids = await run_workers(start, app_dir, 2, "--broker", redis_server.url)
    async with AsyncExitStack() as stack:
        by_pid = await clients_on_workers(stack, port, 6)
        server.process.kill()
        for clients in by_pid.values():
            for client in clients:
                assert await client.wait_closed() == (1001, "server shutting down")
    await server.wait_for(r"WARNING the supervisor is gone: shutting down$")
    with trio.fail_after(TIMEOUT):
        while any(alive(pid) for pid in pids):
            await trio.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie no longer does)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_workers_serve_tls(
    start: StartServer, app_dir: Path, redis_server: RedisServer, certs: Certs
) -> None:
    tls = ["--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.key)]
    flags = ["--workers", "2", "--port", "0", "--broker", redis_server.url, *tls]
    server = await start("run", "app:app", *flags, cwd=app_dir)
    match = await server.wait_for(r"listening on wss://127\.0\.0\.1:(\d+) \(broker redis://")
    async with AsyncExitStack() as stack:
        by_pid = await clients_on_workers(stack, int(match[1]), 4, ssl=certs.client_context())
        assert sum(len(clients) for clients in by_pid.values()) == 4
    server.signal(signal.SIGINT)
    assert await server.exit_code() == 0


async def test_workers_that_keep_crashing_end_the_supervisor_with_1(
    start: StartServer, app_dir: Path, redis_server: RedisServer
) -> None:
    env = child_env(TESTAPP_CRASH_AFTER="0.1")
    flags = ["--workers", "2", "--port", "0", "--broker", redis_server.url]
    server = await start("run", "app:app", *flags, cwd=app_dir, env=env)
    assert await server.exit_code(timeout=60) == 1
    assert re.search(
        r"ERROR worker \d+ \(pid \d+\) exited with status 3; .* in 0\.2 s$", server.stderr, re.M
    )
    last = server.lines[-1]
    assert last.startswith("wsroute: error: workers crashed 6 times within 60 s (more than 5),")
    assert "which exited with status 3; giving up" in last


async def crash(supervisor: _Supervisor, worker: _Worker, lived: float = 0.0) -> float:
    """Let ``worker`` live ``lived`` seconds, then crash: the backoff waited, or -1
    when the supervisor gave up."""
    worker.started_at = trio.current_time()
    await trio.sleep(lived)
    crashed_at = trio.current_time()
    if not await supervisor._crashed(worker, 1):
        return -1.0
    return round(trio.current_time() - crashed_at, 6)


def supervisor_of(workers: int, failures: list[str]) -> _Supervisor:
    return _Supervisor(Namespace(reload=False, workers=workers, port=0), 1, failures.append)


async def test_the_backoff_doubles_and_starts_anew_after_a_worker_lived_30_s(
    autojump_clock: Any,
) -> None:
    failures: list[str] = []
    supervisor = supervisor_of(2, failures)
    one, two = supervisor.workers
    assert [await crash(supervisor, one, lived=20.0) for _ in range(3)] == [0.1, 0.2, 0.4]
    assert await crash(supervisor, two, lived=20.0) == 0.1  # each worker its own
    assert await crash(supervisor, one, lived=30.0) == 0.1
    assert failures == []
    for expected in (0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0):
        assert await crash(supervisor, one, lived=20.0) == expected
    assert failures == []


async def test_more_than_5_crashes_within_60_s_is_a_crash_loop(autojump_clock: Any) -> None:
    failures: list[str] = []
    supervisor = supervisor_of(3, failures)
    # Six crashes of three workers, each after 9 s: all within 60 s.
    waited = [await crash(supervisor, worker, lived=9.0) for worker in supervisor.workers * 2]
    assert waited == [0.1, 0.1, 0.1, 0.2, 0.2, -1.0]
    assert supervisor.stopping.is_set() and supervisor.code == 1
    assert failures == []  # said last, once the other workers have drained (run())
    assert supervisor.failure is not None
    assert supervisor.failure.startswith(
        "workers crashed 6 times within 60 s (more than 5), last worker 3 (pid ?), which"
        " exited with status 1; giving up"
    )


async def test_5_crashes_within_60_s_are_not_a_crash_loop(autojump_clock: Any) -> None:
    failures: list[str] = []
    supervisor = supervisor_of(1, failures)
    [worker] = supervisor.workers
    # One 12 s after each start: 5 within 60 s, several times over, never 6.
    counted = []
    for _ in range(8):
        assert await crash(supervisor, worker, lived=12.0) >= 0
        counted.append(len(supervisor.crashes))
    assert max(counted) == 5 and counted.count(5) >= 3
    assert supervisor.failure is None and not supervisor.stopping.is_set()


async def test_the_memory_broker_is_refused_with_workers(app_dir: Path) -> None:
    explicit = await wsroute_cli(
        "run", "app:app", "--workers", "2", "--broker", "memory://", cwd=app_dir
    )
    assert_one_line_error(
        explicit,
        2,
        "--workers 2 with the memory broker",
        "would not cross workers",
        "--broker redis://",
    )
    # The app's own broker: the supervisor imports the app to know it, and refuses
    # before any worker starts (at INFO, a start would be logged: "started worker 1").
    default = await wsroute_cli("run", "app:app", "--workers", "3", "--port", "0", cwd=app_dir)
    line = assert_one_line_error(default, 2, "--workers 3 with the memory broker")
    assert line == explicit.stderr.strip().replace("--workers 2", "--workers 3")


async def test_an_app_that_cannot_load_fails_once(app_dir: Path, redis_server: RedisServer) -> None:
    result = await wsroute_cli(
        "run",
        "nope:app",
        "--workers",
        "4",
        "--broker",
        redis_server.url,
        "--log-level",
        "warning",
        "--port",
        "0",
        cwd=app_dir,
    )
    assert_one_line_error(result, 2, "no module named 'nope'")


async def test_a_port_in_use_fails_before_any_worker_starts(
    app_dir: Path, redis_server: RedisServer
) -> None:
    taken = trio.socket.socket()
    await taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with taken:
        result = await wsroute_cli(
            "run",
            "app:app",
            "--workers",
            "2",
            "--broker",
            redis_server.url,
            "--port",
            str(port),
            cwd=app_dir,
        )
    assert_one_line_error(result, 1, f"cannot listen on 127.0.0.1:{port}: [Errno 98]")


async def test_invalid_worker_counts_and_reload_with_workers_are_usage_errors(
    app_dir: Path,
) -> None:
    result = await wsroute_cli("run", "app:app", "--workers", "2", "--reload", cwd=app_dir)
    assert_one_line_error(result, 2, "--reload restarts a single process", "--workers 2")
    result = await wsroute_cli("run", "app:app", cwd=app_dir, env=child_env(WSROUTE_WORKERS="0"))
    assert result.returncode == 2
    assert "environment variable WSROUTE_WORKERS: invalid worker count '0'" in result.stderr


# -- --reload ----------------------------------------------------------------------------


async def request_until_served(client: wsroute.client.Client, type: str) -> object:
    """A request made just as the connection dropped fails with Disconnected; the
    next one waits until the client has reconnected."""
    while True:
        try:
            return await client.request(type)
        except wsroute.client.Disconnected:
            await trio.sleep(0.01)


async def test_reload_restarts_with_1012_and_serves_the_edited_handler(
    start: StartServer, app_dir: Path
) -> None:
    port = free_port()
    server = await start("run", "app:app", "--reload", "--port", str(port), cwd=app_dir)
    assert await server.wait_listening() == port
    url = f"ws://127.0.0.1:{port}/"
    async with (
        connect(port) as independent,
        wsroute.client.connect(url) as client,
    ):
        assert await client.request("ping") == "pong"
        (app_dir / "app.py").write_text(APP.replace('return "pong"', 'return "pong, edited"'))
        await server.wait_for(r"INFO changed: app\.py; restarting the worker$")
        assert await independent.wait_closed() == (1012, "server restarting")
        # wsroute's client reconnects by itself after 1012, and waits meanwhile.
        with trio.fail_after(TIMEOUT):
            assert await request_until_served(client, "ping") == "pong, edited"
    await server.wait_for(r"worker 1 \(pid \d+\) is serving again$")
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0


async def test_reload_waits_for_a_fix_after_a_broken_edit(
    start: StartServer, app_dir: Path
) -> None:
    server = await start("run", "app:app", "--reload", "--port", "0", cwd=app_dir)
    port = await server.wait_listening()
    (app_dir / "app.py").write_text(APP + "\nsyntax error(\n")
    await server.wait_for(
        r"ERROR worker 1 \(pid \d+\) exited with status 1; waiting for a change to a Python"
        r" file to start it again$"
    )
    (app_dir / "app.py").write_text(APP.replace('return "pong"', 'return "fixed"'))
    await server.wait_for(r"worker 1 \(pid \d+\) is serving again$")
    async with connect(port) as client:
        assert (await client.request("ping"))["data"] == "fixed"
    server.signal(signal.SIGINT)
    assert await server.exit_code() == 0


async def test_reload_without_watchfiles_says_how_to_install_it(
    app_dir: Path, tmp_path: Path
) -> None:
    stub = write(tmp_path / "stub", {"watchfiles.py": "raise ImportError('not installed')\n"})
    env = child_env(PYTHONPATH=str(stub))
    result = await wsroute_cli("run", "app:app", "--reload", cwd=app_dir, env=env)
    assert_one_line_error(
        result, 2, "--reload needs the watchfiles package", "pip install 'wsroute[reload]'"
    )
