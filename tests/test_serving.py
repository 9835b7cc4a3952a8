"""Running an app (``wsroute._server.serving``): running or not, lifespans, background
tasks, shutdown (also requested while starting), and serving until a signal.

Most of it runs without a listener (``running_context``); the signal and the
background task that publishes run over real sockets.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from wsroute import AlreadyRunningError, App, BrokerError, NotRunningError, RegistrationError
from wsroute.brokers import BrokerSession, MemoryBroker

from .cliproc import TIMEOUT, Server, StartServer, child_env, free_port, start, write, wsroute_cli
from .servers import items_app
from .wsclient import connect

__all__ = ["start"]  # a fixture, imported to be found

# -- running or not ------------------------------------------------------------------


async def test_publish_and_start_soon_need_a_running_app() -> None:
    app = App()

    async def task() -> None: ...

    with pytest.raises(NotRunningError):
        await app.publish("t", "tick")
    with pytest.raises(NotRunningError):
        app.start_soon(task)
    async with app.running_context():
        pass
    with pytest.raises(NotRunningError):
        await app.publish("t", "tick")
    with pytest.raises(NotRunningError):
        app.start_soon(task)


def test_start_soon_refuses_what_it_could_never_run_at_the_call() -> None:
    app = App()

    async def tick(n: int) -> None: ...

    coroutine = tick(1)
    with pytest.raises(TypeError) as info:
        app.start_soon(coroutine)  # type: ignore[arg-type]
    assert str(info.value) == (
        "app.start_soon takes an async function and its arguments: write"
        " app.start_soon(tick, ...), not app.start_soon(tick(...))"
    )
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning either
    with pytest.raises(TypeError, match=r"arguments, not 'tick'$"):
        app.start_soon("tick")  # type: ignore[arg-type]


def test_shutdown_when_not_running_is_a_no_op() -> None:
    app = App()
    app.shutdown()
    assert not app.running


async def test_running_context_cannot_be_entered_twice() -> None:
    app = App()
    async with app.running_context():
        with pytest.raises(AlreadyRunningError, match="already running"):
            async with app.running_context():
                pass  # pragma: no cover
        assert app.running
    assert not app.running


# -- lifespans -----------------------------------------------------------------------


async def test_lifespans_run_in_order_and_tear_down_in_reverse() -> None:
    app = App()
    log: list[Any] = []

    @app.lifespan
    async def first() -> AsyncIterator[None]:
        log.append("enter first")
        yield
        log.append("exit first")

    @app.lifespan
    def second(app_arg: App) -> AbstractAsyncContextManager[None]:
        @asynccontextmanager
        async def manager() -> AsyncIterator[None]:
            log.append(("enter second", app_arg is app, app.running))
            yield
            log.append("exit second")

        return manager()

    @app.lifespan
    async def third(app_arg: App) -> AsyncIterator[None]:
        log.append(("enter third", app_arg is app))
        yield
        log.append("exit third")

    async with app.running_context():
        log.append("serving")
    assert log == [
        "enter first",
        ("enter second", True, True),
        ("enter third", True),
        "serving",
        "exit third",
        "exit second",
        "exit first",
    ]
    assert not app.running


async def test_lifespan_exits_even_when_the_body_raises() -> None:
    app = App()
    log: list[str] = []

    @app.lifespan
    async def life() -> AsyncIterator[None]:
        try:
            yield
        finally:
            log.append("exit")

    with pytest.raises(KeyError):
        async with app.running_context():
            raise KeyError("boom")
    assert log == ["exit"]
    assert not app.running


async def test_lifespan_returning_a_non_context_manager_fails_at_start() -> None:
    app = App()

    @app.lifespan
    def bad() -> Any:
        return 42

    with pytest.raises(RegistrationError, match="async context manager, not int"):
        async with app.running_context():
            pass  # pragma: no cover
    assert not app.running


# -- background tasks -----------------------------------------------------------------


async def test_background_tasks_start_after_startup_and_stop_before_teardown(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = App()
    log: list[str] = []

    async def worker(name: str) -> None:
        log.append(f"{name} started")
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            log.append(f"{name} cancelled")
            raise

    @app.lifespan
    async def first() -> AsyncIterator[None]:
        app.start_soon(worker, "early")
        await trio.sleep(1)  # the task must not start yet
        log.append("first ready")
        yield
        log.append("first teardown")

    @app.lifespan
    async def second() -> AsyncIterator[None]:
        await trio.sleep(1)
        log.append("second ready")
        yield
        log.append("second teardown")

    async with app.running_context():
        await trio.sleep(1)
        log.append("serving")
        app.start_soon(worker, "late")
        await trio.sleep(1)
    assert log[:5] == ["first ready", "second ready", "early started", "serving", "late started"]
    assert sorted(log[5:7]) == ["early cancelled", "late cancelled"]
    assert log[7:] == ["second teardown", "first teardown"]


async def test_failing_background_task_is_logged_and_does_not_crash(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()
    ticks: list[int] = []

    async def boom() -> None:
        await trio.sleep(1)
        raise RuntimeError("kaboom")

    async def ticker() -> None:
        for n in range(5):
            ticks.append(n)
            await trio.sleep(1)

    with caplog.at_level(logging.ERROR, logger="wsroute"):
        async with app.running_context():
            app.start_soon(boom)
            app.start_soon(ticker)
            await trio.sleep(10)
            assert app.running
    assert ticks == [0, 1, 2, 3, 4]
    failures = [
        record
        for record in caplog.records
        if record.name == "wsroute" and record.exc_info and record.levelno == logging.ERROR
    ]
    assert len(failures) == 1
    assert "background task" in failures[0].getMessage()
    exc = failures[0].exc_info
    assert exc is not None
    assert isinstance(exc[1], RuntimeError)
    assert str(exc[1]) == "kaboom"


async def test_lifespan_background_task_publishes(serve):
    app = App()
    tick = trio.Event()
    log: list[str] = []

    async def ticker() -> None:
        try:
            await tick.wait()
            await app.publish("all", "tick", {"n": 1})
            await trio.sleep_forever()
        finally:
            log.append("ticker stopped")

    @app.lifespan
    async def lifespan():
        log.append("start")
        app.start_soon(ticker)
        yield
        log.append("stop")

    port = await serve(app)
    async with connect(port) as client:
        await trio.sleep(0)
        tick.set()
        assert await client.recv() == {"type": "tick", "topic": "all", "data": {"n": 1}}
    app.shutdown()
    with trio.fail_after(5):
        while app.running:
            await trio.sleep(0.01)
    assert log == ["start", "ticker stopped", "stop"]


# -- starting, stopping, signals --------------------------------------------------------


async def test_shutdown_requested_during_start_up_is_not_lost(nursery):
    class SlowBroker(MemoryBroker):
        def connect(self, **options):  # type: ignore[override]
            manager = super().connect(**options)

            class Slow:
                async def __aenter__(self) -> Any:
                    await trio.sleep(0.05)
                    return await manager.__aenter__()

                async def __aexit__(self, *exc: object) -> None:
                    await manager.__aexit__(*exc)

            return Slow()

    app = items_app(broker=SlowBroker())
    done = trio.Event()

    async def serve_then_signal() -> None:
        await app.serve("127.0.0.1", 0)
        done.set()

    nursery.start_soon(serve_then_signal)
    await trio.sleep(0.01)
    assert not app.running
    app.shutdown()  # as a SIGTERM during start-up would
    with trio.fail_after(5):
        await done.wait()


class UnreachableBroker(MemoryBroker):
    """A broker that cannot be reached at start, as a Redis that is not there."""

    @asynccontextmanager
    async def connect(self, *, on_state: Any = None) -> AsyncIterator[BrokerSession]:
        await trio.lowlevel.checkpoint()
        raise BrokerError("cannot connect to the broker")
        yield  # pragma: no cover


async def test_a_broker_unreachable_at_start_fails_serve_unwrapped() -> None:
    app = App(broker=UnreachableBroker())
    with pytest.raises(BrokerError, match=r"^cannot connect to the broker$"):
        await app.serve("127.0.0.1", 0)
    assert not app.running
    app.shutdown()  # no longer starting: nothing is left to stop later
    assert not app._stop_requested


async def listening_port(caplog: pytest.LogCaptureFixture) -> int:
    """The port of the "listening on" line, once it is logged."""
    with trio.fail_after(5):
        while True:
            for message in caplog.messages:
                if found := re.match(r"listening on ws://127\.0\.0\.1:(\d+) ", message):
                    return int(found[1])
            await trio.sleep(0.01)


async def test_a_signal_shuts_the_server_down_gracefully(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The path ``App.run`` takes, in this process: SIGINT while serving is a graceful
    shutdown (the signal receiver is installed before the app runs, so the signal
    never reaches pytest)."""
    app = items_app()
    done = trio.Event()

    async def serve_until_signal() -> None:
        await app._serve_until_signal(functools.partial(app.serve, "127.0.0.1", 0))
        done.set()

    with caplog.at_level(logging.INFO, logger="wsroute"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_until_signal)
            port = await listening_port(caplog)
            async with connect(port) as client:
                assert (await client.request("ping"))["data"] == "pong"
                os.kill(os.getpid(), signal.SIGINT)
                assert await client.wait_closed() == (1001, "server shutting down")
            with trio.fail_after(5):
                await done.wait()
    assert "received SIGINT, shutting down gracefully" in caplog.messages
    assert not app.running


async def test_shutdown_for_a_restart_closes_with_1012_and_runs_the_hooks(
    nursery: trio.Nursery,
) -> None:
    """What ``wsroute run --reload`` asks of a worker before it is replaced."""
    app = items_app()
    gone: list[str] = []

    @app.on_disconnect
    async def bye(conn: Any) -> None:
        gone.append(conn.id)

    port = await nursery.start(app.serve, "127.0.0.1", 0)
    async with connect(port) as client:
        assert (await client.request("ping"))["data"] == "pong"
        app.shutdown(restart=True)
        assert await client.wait_closed() == (1012, "server restarting")
    with trio.fail_after(5):
        while app.running:
            await trio.sleep(0.01)
    assert len(gone) == 1


# -- python app.py: App.run's logging -----------------------------------------------------

SCRIPT = """
    import logging
    import sys

    from wsroute import App

    {setup}
    app = App()
    log = logging.getLogger("app")


    @app.direct("ping")
    async def ping() -> str:
        log.debug("ping received")
        log.warning("ping warned")
        return "pong"


    if __name__ == "__main__":
        app.run("127.0.0.1", {port})
"""

CLI_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO "


async def serve_script(start: StartServer, directory: Path, setup: str = "", **env: str) -> Server:
    """``python app.py`` in ``directory``, answering a ping; stopped by SIGINT."""
    write(directory, {"app.py": SCRIPT.format(setup=setup, port=0)})
    server = await start("app.py", cwd=directory, script=True, env=child_env(**env))
    port = await server.wait_listening()
    async with connect(port) as client:
        assert (await client.request("ping"))["data"] == "pong"
    await server.wait_for(r"disconnect \S+ code=1000")
    server.signal(signal.SIGINT)
    assert await server.exit_code() == 0, server.stderr
    return server


async def test_run_logs_like_the_cli_when_the_app_configured_no_logging(
    start: StartServer, tmp_path: Path
) -> None:
    server = await serve_script(start, tmp_path)
    await server.wait_for(CLI_LINE + r"listening on ws://127\.0\.0\.1:\d+ ")
    await server.wait_for(CLI_LINE + r"connect \S+ from 127\.0\.0\.1:\d+ path=/$")
    await server.wait_for(CLI_LINE + "received SIGINT, shutting down gracefully$")


@pytest.mark.parametrize(
    "setup",
    [
        'logging.basicConfig(level="INFO", format="mine %(levelname)s %(message)s")',
        "handler = logging.StreamHandler(sys.stderr)\n"
        '    handler.setFormatter(logging.Formatter("mine %(levelname)s %(message)s"))\n'
        '    logging.getLogger("wsroute").addHandler(handler)\n'
        '    logging.getLogger("wsroute").setLevel("INFO")',
    ],
    ids=["root", "wsroute-logger"],
)
async def test_run_keeps_the_logging_the_app_configured(
    start: StartServer, tmp_path: Path, setup: str
) -> None:
    # Its choices stand over the variables too: App.run reads them only for its own
    # default logging.
    variables = {"WSROUTE_LOG_LEVEL": "debug", "WSROUTE_LOG_FORMAT": "xml"}
    server = await serve_script(start, tmp_path, setup, **variables)
    assert "ping received" not in server.stderr
    assert [line for line in server.lines if "listening on" in line] == [
        line for line in server.lines if line.startswith("mine INFO listening on ws://")
    ]
    assert not [line for line in server.lines if re.match(CLI_LINE, line)], server.stderr


@pytest.mark.parametrize(
    ("variables", "debug_line"),
    [
        ({"WSROUTE_LOG_LEVEL": "DEBUG"}, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d DEBUG ping received$"),
        ({"WSROUTE_LOG_FORMAT": "json"}, None),
        (
            {"WSROUTE_LOG_LEVEL": "debug", "WSROUTE_LOG_FORMAT": "json"},
            r'"level": "DEBUG", "logger": "app", "message": "ping received"',
        ),
        ({"WSROUTE_LOG_LEVEL": "", "WSROUTE_LOG_FORMAT": ""}, None),  # empty: unset
    ],
    ids=["level", "format", "both", "empty"],
)
async def test_run_takes_the_log_level_and_format_from_the_environment_as_the_cli_does(
    start: StartServer, tmp_path: Path, variables: dict[str, str], debug_line: str | None
) -> None:
    server = await serve_script(start, tmp_path, **variables)
    if debug_line is not None:
        await server.wait_for(debug_line)
    else:
        assert "ping received" not in server.stderr
    if variables.get("WSROUTE_LOG_FORMAT") == "json":
        logged = [json.loads(line) for line in server.lines]
        assert {"level": "INFO", "logger": "wsroute"}.items() <= logged[0].items()
        assert logged[0]["message"].startswith("listening on ws://127.0.0.1:")
    else:
        await server.wait_for(CLI_LINE + r"listening on ws://127\.0\.0\.1:\d+ ")


async def test_run_at_warning_logs_no_info_line(start: StartServer, tmp_path: Path) -> None:
    port = free_port()
    write(tmp_path, {"app.py": SCRIPT.format(setup="", port=port)})
    env = child_env(WSROUTE_LOG_LEVEL="warning")
    server = await start("app.py", cwd=tmp_path, script=True, env=env)
    with trio.fail_after(TIMEOUT):  # no "listening on" line to wait for, at warning
        while True:
            try:
                await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                break
            except OSError:
                await trio.sleep(0.02)
    async with connect(port) as client:
        assert (await client.request("ping"))["data"] == "pong"
    await server.wait_for(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARNING ping warned$")
    server.signal(signal.SIGINT)
    assert await server.exit_code() == 0, server.stderr
    assert server.lines == [line for line in server.lines if " WARNING " in line]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "WSROUTE_LOG_LEVEL",
            "loud",
            "invalid log level 'loud': choose from critical, error, warning, info, debug",
        ),
        ("WSROUTE_LOG_FORMAT", "JSON", "expected text or json, not 'JSON'"),
    ],
)
async def test_run_refuses_an_invalid_log_variable_with_the_clis_message(
    start: StartServer, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    write(tmp_path, {"app.py": SCRIPT.format(setup="", port=0)})
    env = child_env(**{variable: value})
    server = await start("app.py", cwd=tmp_path, script=True, env=env)
    assert await server.exit_code() == 1
    said = f"environment variable {variable}: {message}"
    assert server.lines[-1] == f"ValueError: {said}", server.stderr
    assert "listening on" not in server.stderr
    cli = await wsroute_cli("run", "app:app", "--port", "0", cwd=tmp_path, env=env)
    assert (cli.returncode, cli.stderr.splitlines()[-1]) == (2, f"wsroute run: error: {said}")
