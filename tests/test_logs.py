"""JSON logs (``wsroute._logs``): the formatter on its own, and ``wsroute run
--log-format json`` as a real process, whose every stderr line is one JSON object
carrying the fields of the connection it is about, with credentials redacted."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import wsroute
from wsroute import JSONFormatter

from .cliproc import StartServer, child_env, start, write
from .rawws import http_exchange
from .wsclient import connect

__all__ = ["start"]  # fixture, imported to be found


def record(message: str = "hello %s", *args: Any, **fields: Any) -> logging.LogRecord:
    made = logging.LogRecord("wsroute", logging.WARNING, __file__, 1, message, args or ("x",), None)
    made.__dict__.update(fields)
    return made


def test_a_record_is_one_json_object_on_one_line() -> None:
    line = JSONFormatter().format(record("two\nlines %s", 'and a "quote"'))
    assert "\n" not in line
    out = json.loads(line)
    assert list(out)[:4] == ["timestamp", "level", "logger", "message"]
    assert out["level"] == "WARNING"
    assert out["logger"] == "wsroute"
    assert out["message"] == 'two\nlines and a "quote"'


def test_the_timestamp_is_iso_8601_utc() -> None:
    made = record()
    made.created = 1_780_000_000.25
    stamp = json.loads(JSONFormatter().format(made))["timestamp"]
    assert stamp == "2026-05-28T20:26:40.250Z"
    assert datetime.fromisoformat(stamp) == datetime.fromtimestamp(made.created, tz=UTC)


def test_extra_fields_are_kept_and_ours_win_over_them() -> None:
    made = record(connection_id="c1", close_code=1000, duration_seconds=1.5, level="fake")
    out = json.loads(JSONFormatter().format(made))
    assert out["connection_id"] == "c1"
    assert out["close_code"] == 1000
    assert out["duration_seconds"] == 1.5
    assert out["level"] == "WARNING"
    assert not any(key in out for key in ("args", "msg", "pathname", "lineno", "created"))


def test_values_json_cannot_hold_are_written_as_text() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    made = record(path=Path("/srv"), who=Unprintable(), pair=("a", 1))
    out = json.loads(JSONFormatter().format(made))
    assert out["path"] == "/srv"
    assert out["who"] == "<unprintable Unprintable>"
    assert out["pair"] == ["a", 1]


def test_an_exception_and_a_stack_are_fields() -> None:
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        made = record(exc_info=sys.exc_info(), stack_info="Stack (most recent call last):\n  x")
    out = json.loads(JSONFormatter().format(made))
    assert out["exception"].startswith("Traceback (most recent call last):")
    assert out["exception"].endswith("RuntimeError: kaboom")
    assert out["stack"].startswith("Stack")


def test_it_works_from_dict_config_without_the_cli() -> None:
    stream = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "wsroute.JSONFormatter"}},
            "handlers": {
                "out": {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}
            },
            "loggers": {"test.logs.dictconfig": {"handlers": ["out"], "level": "INFO"}},
        }
    )
    logger = logging.getLogger("test.logs.dictconfig")
    try:
        logger.info("ready", extra={"port": 8000})
    finally:
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
    assert json.loads(stream.getvalue())["port"] == 8000
    assert wsroute.JSONFormatter is JSONFormatter


# -- a real server -----------------------------------------------------------------------

APP = """
import wsroute

app = wsroute.App()


@app.accept
async def accept(request):
    return {"id": "ann"}


@app.direct("boom")
async def boom() -> None:
    raise RuntimeError("kaboom")
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "project", {"app.py": APP})


def records(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line, parsed: a line that is not a JSON object fails the test."""
    parsed = [json.loads(line) for line in stderr.splitlines()]
    assert all(isinstance(item, dict) for item in parsed)
    return parsed


async def test_run_with_json_logs(start: StartServer, app_dir: Path) -> None:
    server = await start("run", "app:app", "--port", "0", "--log-format", "json", cwd=app_dir)
    port = await server.wait_listening()
    forwarded = {"X-Forwarded-For": "203.0.113.7", "Authorization": "Bearer s3cret-header"}
    async with connect(port, "/ws?room=7&token=s3cret", additional_headers=forwarded) as client:
        reply = await client.request("boom")
        assert reply["error"]["code"] == "internal_error"
        await server.wait_for(r'"message": "handler .*boom.* failed')
        await client.close(1000, "bye")
    await server.wait_for(r'"message": "disconnect ')
    answer = await http_exchange(port, b"GET /nothing?api_key=s3cret HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 426  # not an upgrade, and no route
    await server.wait_for(r'"method": "GET"')
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0
    assert "s3cret" not in server.stderr
    logged = records(server.stderr)
    for item in logged:
        assert datetime.fromisoformat(item["timestamp"]).tzinfo == UTC
        assert item["logger"] == "wsroute"
    connect_record = next(r for r in logged if r["message"].startswith("connect "))
    conn_id = connect_record["connection_id"]
    assert connect_record["level"] == "INFO"
    assert connect_record["user"] == "ann"
    assert connect_record["path"] == "/ws"
    assert connect_record["query"] == "room=7&token=[REDACTED]"
    assert connect_record["remote"] == "203.0.113.7:0"  # through the proxy on 127.0.0.1
    failed = next(r for r in logged if "failed on connection" in r["message"])
    assert failed["level"] == "ERROR"
    assert failed["connection_id"] == conn_id
    assert failed["exception"].splitlines()[-1] == "RuntimeError: kaboom"
    gone = next(r for r in logged if r["message"].startswith("disconnect "))
    assert gone["connection_id"] == conn_id
    assert (gone["close_code"], gone["close_reason"], gone["closed_by"]) == (1000, "bye", "client")
    assert 0 <= gone["duration_seconds"] < 10
    assert gone["remote"] == "203.0.113.7:0"
    get = next(r for r in logged if r.get("method") == "GET")
    assert (get["path"], get["query"], get["status"]) == ("/nothing", "api_key=[REDACTED]", 426)
    assert get["remote"].startswith("127.0.0.1:")


async def test_a_failure_to_listen_is_a_json_record(start: StartServer, app_dir: Path) -> None:
    env = child_env(WSROUTE_LOG_FORMAT="json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        server = await start("run", "app:app", "--port", port, cwd=app_dir, env=env)
        assert await server.exit_code() == 1
    (last,) = [r for r in records(server.stderr) if r["level"] == "CRITICAL"]
    in_use = f"cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use"
    assert last["message"] == in_use
    assert "exception" not in last


async def test_a_crash_is_a_json_record_with_its_traceback(
    start: StartServer, tmp_path: Path
) -> None:
    crashing = """
    import wsroute

    app = wsroute.App()


    @app.lifespan
    async def setup(app):
        raise RuntimeError("no database")
        yield
    """
    write(tmp_path, {"crash.py": crashing})
    server = await start("run", "crash:app", "--port", "0", "--log-format", "json", cwd=tmp_path)
    assert await server.exit_code() == 1
    (crash,) = [r for r in records(server.stderr) if r["level"] == "CRITICAL"]
    assert crash["message"] == "the app crashed"
    assert "RuntimeError: no database" in crash["exception"]
