"""The ``wsroute`` command line, run as real child processes.

Loader errors, ``routes`` output, options from flags and ``WSROUTE_*`` variables, and
serving with graceful and forced shutdown by signal. Every wait is bounded.
"""

from __future__ import annotations

import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import wsroute
import wsroute.client

from .cliproc import (
    StartServer,
    assert_one_line_error,
    child_env,
    free_port,
    start,
    write,
    wsroute_cli,
)
from .rawws import http_exchange
from .tlstools import PASSWORD, Certs, certs
from .wsclient import connect

__all__ = ["certs", "start"]  # fixtures, imported to be found

APP = """
import logging

import trio

from wsroute import App, Connection

app = App(shutdown_timeout=30)
log = logging.getLogger("testapp")
log.debug("debug marker from the app")


@app.direct("ping")
async def ping() -> str:
    return "pong"


@app.direct("sleep")
async def sleep(seconds: float) -> str:
    log.info("handler sleeping %s", seconds)
    await trio.sleep(seconds)
    return "slept"


@app.on_disconnect
async def bye(conn: Connection) -> None:
    log.info("on_disconnect hook ran for %s", conn.id)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "project", {"app.py": APP})


# -- the command itself ---------------------------------------------------------------


async def test_console_script_and_module_report_the_version() -> None:
    assert (Path(sys.executable).parent / "wsroute").is_file()
    for script in (True, False):
        result = await wsroute_cli("--version", script=script)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"wsroute {wsroute.__version__}\n"


async def test_no_command_prints_help_and_exits_2() -> None:
    result = await wsroute_cli()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: wsroute")
    assert "run" in result.stderr and "routes" in result.stderr


# -- routes -----------------------------------------------------------------------------


async def test_routes_prints_the_items_example_table() -> None:
    result = await wsroute_cli("routes", "--app-dir", "examples/items", "app:app")
    assert result.returncode == 0, result.stderr
    assert result.stdout == textwrap.dedent("""\
        TYPE         KIND       PAYLOAD     RESULT      TOPIC
        list_items   direct     -           list[Item]  -
        get_item     direct     ItemRef     Item        -
        create_item  broadcast  CreateItem  Item        items
        delete_item  broadcast  ItemRef     ItemRef     items

        GET PATH     ANSWERED BY
        /healthz     the health check (App option health_path)
        /metrics     the metrics (App option metrics_path)
        /readyz      the readiness check (App option ready_path)
        /wsroute.js  the JavaScript client

        SUBPROTOCOLS  wsroute.v1.json, wsroute.v1.msgpack (or none: JSON)
        COMPRESSION   off
    """)


async def test_routes_says_what_clients_may_speak(tmp_path: Path) -> None:
    (tmp_path / "strict.py").write_text(
        textwrap.dedent("""\
            import wsroute

            app = wsroute.App(
                subprotocols=["chat.v2"],
                require_subprotocol=True,
                compression=wsroute.Deflate(threshold=256, server_context_takeover=True),
            )
        """)
    )
    result = await wsroute_cli("routes", "strict:app", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "SUBPROTOCOLS  chat.v2",
        "COMPRESSION   permessage-deflate (from 256 bytes, level 1, server context kept,"
        " client context none)",
    ]


async def test_routes_formats_types_and_topic_functions(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "rooms.py": """
            from typing import Literal
            from types import SimpleNamespace

            import attrs

            from wsroute import App, Connection

            app = App()
            holder = SimpleNamespace(app=app)

            @attrs.frozen
            class Msg:
                room: str

            def room_of(msg, conn):
                return msg.room

            @app.direct("raw")
            async def raw(data):
                return data

            @app.direct("maybe")
            async def maybe(key: Literal["a", "b"]) -> dict[str, list[Msg]] | None:
                return None

            @app.broadcast("say", topic=room_of)
            async def say(msg: Msg, conn: Connection) -> Msg:
                return msg
            """
        },
    )
    result = await wsroute_cli("routes", "rooms:holder.app", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.partition("\n\n")[0] + "\n" == textwrap.dedent("""\
        TYPE   KIND       PAYLOAD            RESULT                       TOPIC
        raw    direct     Any                Any                          -
        maybe  direct     Literal['a', 'b']  dict[str, list[Msg]] | None  -
        say    broadcast  Msg                Msg                          <fn rooms.room_of>
    """)


# -- loader errors ----------------------------------------------------------------------

MODULES = {
    "mod.py": """
    from types import SimpleNamespace
    from wsroute import App

    app = App()
    number = 3

    def factory():
        return App()
    """,
    "pkg/__init__.py": "",
    "broken.py": """
    import json
    import missing_dependency_xyz
    """,
    "badname.py": """
    from json import no_such_name
    """,
}


@pytest.mark.parametrize(
    ("spec", "parts"),
    [
        ("mod", ["'mod' is not a valid app spec", "expected MODULE:ATTR"]),
        ("mod:", ["'mod:' is not a valid app spec"]),
        (":app", ["':app' is not a valid app spec"]),
        ("mod:app:x", ["is not a valid app spec"]),
        ("mod.py:app", ["not a file path: use 'mod:app'"]),
        ("src/mod.py:app", ["use 'mod:app' and --app-dir src"]),
        ("nosuch:app", ["no module named 'nosuch' on sys.path", "--app-dir"]),
        ("pkg.nosuch:app", ["no module named 'pkg.nosuch' on sys.path"]),
        ("nopkg.mod:app", ["no module named 'nopkg' on sys.path"]),
        ("mod:nope", ["'mod' has no attribute 'nope'", "mod.py", "the module's App: 'mod:app'"]),
        ("mod:app.nope", ["'app' has no attribute 'nope'"]),
        ("mod:factory", ["is the function factory, not a wsroute.App", "app = create_app()"]),
        ("mod:number", ["'mod:number' is an int, not a wsroute.App"]),
        ("mod:SimpleNamespace", ["is the class SimpleNamespace, not a wsroute.App"]),
    ],
)
async def test_loader_errors_are_one_line_and_exit_2(
    tmp_path: Path, spec: str, parts: list[str]
) -> None:
    write(tmp_path, MODULES)
    result = await wsroute_cli("routes", spec, cwd=tmp_path)
    assert_one_line_error(result, 2, *parts)


async def test_run_reports_loader_errors_before_serving(tmp_path: Path) -> None:
    write(tmp_path, MODULES)
    result = await wsroute_cli("run", "mod:number", "--port", "0", cwd=tmp_path)
    assert_one_line_error(result, 2, "'mod:number' is an int, not a wsroute.App")


async def test_import_error_inside_the_module_is_not_module_not_found(tmp_path: Path) -> None:
    write(tmp_path, MODULES)
    line = assert_one_line_error(
        await wsroute_cli("routes", "broken:app", cwd=tmp_path),
        2,
        "module 'broken' was found, but importing it failed at",
        f"{tmp_path / 'broken.py'}:3",
        "No module named 'missing_dependency_xyz'",
        "is a dependency missing?",
    )
    assert "on sys.path" not in line and "--app-dir" not in line
    assert_one_line_error(
        await wsroute_cli("routes", "badname:app", cwd=tmp_path),
        2,
        f"importing it failed at {tmp_path / 'badname.py'}:2",
        "cannot import name 'no_such_name' from 'json'",
    )


async def test_app_dir_is_searched_first_and_must_exist(tmp_path: Path) -> None:
    write(tmp_path / "project", MODULES)
    result = await wsroute_cli("routes", "--app-dir", str(tmp_path / "project"), "mod:app")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "TYPE  KIND  PAYLOAD  RESULT  TOPIC"
    result = await wsroute_cli(
        "routes", "mod:app", env=child_env(WSROUTE_APP_DIR="project"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    missing = str(tmp_path / "missing")
    assert_one_line_error(
        await wsroute_cli("routes", "--app-dir", missing, "mod:app"), 2, "is not a directory"
    )


async def test_exception_while_importing_prints_the_users_traceback_and_exits_1(
    tmp_path: Path,
) -> None:
    write(tmp_path, {"boom.py": "x = 1\nraise RuntimeError('boom from the module')\n"})
    result = await wsroute_cli("run", "boom:app", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    # The traceback starts at the user's module, not in the loader or importlib.
    assert lines[:2] == [
        "Traceback (most recent call last):",
        f'  File "{tmp_path / "boom.py"}", line 2, in <module>',
    ]
    assert "RuntimeError: boom from the module" in lines
    assert lines[-1] == "wsroute: error: importing 'boom' raised RuntimeError (traceback above)"


@pytest.mark.parametrize("command", ["run", "routes"])
async def test_registration_error_is_one_line_under_the_users_frame(
    tmp_path: Path, command: str
) -> None:
    write(
        tmp_path,
        {
            "sync.py": """\
                from wsroute import App

                app = App()


                @app.direct("ping")
                def ping() -> str:
                    return "pong"
                """
        },
    )
    args = ["--port", "0"] if command == "run" else []
    result = await wsroute_cli(command, "sync:app", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f'  File "{tmp_path / "sync.py"}", line 6, in <module>',
        '    @app.direct("ping")',
        "wsroute: error: direct handler 'ping', sync.ping must be an async function: write"
        " `async def ping(...)`.",
    ]


@pytest.mark.parametrize(
    ("command", "made", "message"),
    [
        ("run", "App(outbox_size=0)", "App option outbox_size must be an integer >= 1, not 0"),
        (
            "run",
            'App(slow_consumer="block")',
            "App option slow_consumer must be 'close', 'drop_oldest' or 'drop_newest' (or a"
            " wsroute.SlowConsumerPolicy), not 'block'",
        ),
        (
            "routes",
            'App(history={"room:*": History(size=0, ttl=60)})',
            "History size must be an integer from 1 to 1000000, not 0",
        ),
    ],
)
async def test_an_option_wsroute_refuses_is_one_line_with_where_and_exits_2(
    tmp_path: Path, command: str, made: str, message: str
) -> None:
    # Was the traceback through attrs' generated __init__, then "importing 'bad' raised
    # ValueError", and status 1, as for a bug in the module.
    write(tmp_path, {"bad.py": f"from wsroute import App, History\n\napp = {made}\n"})
    args = ["--port", "0"] if command == "run" else []
    result = await wsroute_cli(command, "bad:app", *args, cwd=tmp_path)
    line = assert_one_line_error(result, 2)
    assert line == f"wsroute: error: {message} (at {tmp_path / 'bad.py'}:3)"


async def test_a_value_error_of_the_apps_own_code_keeps_its_traceback(tmp_path: Path) -> None:
    write(tmp_path, {"bad.py": "from wsroute import App\n\napp = App(outbox_size=int('x'))\n"})
    result = await wsroute_cli("routes", "bad:app", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "ValueError: invalid literal for int() with base 10: 'x'" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "wsroute: error: importing 'bad' raised ValueError (traceback above)"
    )


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "parts"),
    [
        (["--port", "65536"], {}, ["argument --port: invalid port '65536'"]),
        (["--port", "http"], {}, ["argument --port: invalid port 'http'"]),
        (["--log-level", "loud"], {}, ["argument --log-level: invalid log level 'loud'"]),
        ([], {"WSROUTE_PORT": "-1"}, ["environment variable WSROUTE_PORT: invalid port '-1'"]),
        ([], {"WSROUTE_LOG_LEVEL": "x"}, ["environment variable WSROUTE_LOG_LEVEL: invalid log"]),
    ],
)
async def test_invalid_options_exit_2(
    app_dir: Path, args: list[str], env: dict[str, str], parts: list[str]
) -> None:
    result = await wsroute_cli("run", "app:app", *args, cwd=app_dir, env=child_env(**env))
    assert result.returncode == 2
    assert result.stderr.startswith("usage: wsroute run")
    last = result.stderr.splitlines()[-1]
    assert last.startswith("wsroute run: error: ")
    for part in parts:
        assert part in last


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--broker", "redis://localhost?bogus=1"], {}, "unknown Redis broker option 'bogus'"),
        ([], {"WSROUTE_BROKER": "kafka://x"}, "unknown broker URL 'kafka://x'"),
    ],
)
async def test_bad_broker_url_exits_2(
    app_dir: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = await wsroute_cli("run", "app:app", *args, cwd=app_dir, env=child_env(**env))
    assert_one_line_error(result, 2, message)


async def test_port_in_use_is_one_line_and_exits_1(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await wsroute_cli("run", "app:app", "--port", str(port), cwd=app_dir)
    assert_one_line_error(
        result, 1, f"cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use"
    )


async def test_options_from_the_environment(start: StartServer, app_dir: Path) -> None:
    port = free_port()
    env = child_env(
        WSROUTE_HOST="127.0.0.1",
        WSROUTE_PORT=str(port),
        WSROUTE_BROKER="memory://",
        WSROUTE_LOG_LEVEL="debug",
        WSROUTE_APP_DIR=str(app_dir),
    )
    server = await start("run", "app:app", cwd=app_dir.parent, env=env)
    await server.wait_for(rf"INFO listening on ws://127\.0\.0\.1:{port} \(broker memory://\)$")
    await server.wait_for(r"DEBUG debug marker from the app$")
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0


async def test_flags_win_over_the_environment(start: StartServer, app_dir: Path) -> None:
    env = child_env(
        WSROUTE_PORT="not a port", WSROUTE_LOG_LEVEL="error", WSROUTE_APP_DIR="/nonexistent"
    )
    flags = ["--port", "0", "--log-level", "info", "--app-dir", str(app_dir)]
    server = await start("run", "app:app", *flags, cwd=app_dir.parent, env=env)
    assert await server.wait_listening() > 0
    assert "debug marker" not in server.stderr
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0


async def test_probe_paths_from_flags_and_the_environment(
    start: StartServer, app_dir: Path
) -> None:
    env = child_env(WSROUTE_HEALTH_PATH="/alive", WSROUTE_READY_PATH="off")
    flags = ["--port", "0", "--metrics-path", "/internal/metrics"]
    server = await start("run", "app:app", *flags, cwd=app_dir, env=env)
    port = await server.wait_listening()

    async def status(path: str) -> int:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        return (await http_exchange(port, request)).status

    assert [await status(p) for p in ("/alive", "/internal/metrics")] == [200, 200]
    assert [await status(p) for p in ("/healthz", "/readyz", "/metrics")] == [426, 426, 426]
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0


async def test_a_probe_moved_onto_the_apps_route_exits_2(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"app.py": APP + '\n@app.get("/status")\nasync def status() -> str:\n    return "x"\n'},
    )
    result = await wsroute_cli(
        "run", "app:app", "--port", "0", "--health-path", "/status", cwd=tmp_path
    )
    assert_one_line_error(
        result, 2, "'/status' is the path of the health check (App option health_path)"
    )


async def test_an_invalid_probe_path_is_a_usage_error(app_dir: Path) -> None:
    result = await wsroute_cli("run", "app:app", "--metrics-path", "metrics", cwd=app_dir)
    assert result.returncode == 2
    assert "argument --metrics-path: expected a path such as /healthz, or off" in result.stderr


# -- serving and signals --------------------------------------------------------------------


async def test_serves_then_sigterm_closes_clients_with_1001(
    start: StartServer, app_dir: Path
) -> None:
    server = await start("run", "app:app", "--app-dir", str(app_dir), "--port", "0", cwd=app_dir)
    port = await server.wait_listening()
    async with connect(port) as client:
        assert await client.request("ping") == {"type": "ping", "id": 1, "ok": True, "data": "pong"}
        conn_id = (await server.wait_for(r"INFO connect (\S+) from 127\.0\.0\.1:\d+ path=/$"))[1]
        server.signal(signal.SIGTERM)
        assert (await client.wait_closed())[0] == 1001
    assert await server.exit_code() == 0
    await server.wait_for(r"INFO received SIGTERM, shutting down gracefully$")
    await server.wait_for(rf"INFO on_disconnect hook ran for {conn_id}$")
    await server.wait_for(rf"INFO disconnect {conn_id} code=1001 by=server ")


async def test_sigterm_lets_the_handler_in_flight_reply_first(
    start: StartServer, app_dir: Path
) -> None:
    server = await start("run", "app:app", "--app-dir", str(app_dir), "--port", "0", cwd=app_dir)
    async with connect(await server.wait_listening()) as client:
        await client.send({"type": "sleep", "id": 5, "data": 0.3})
        await server.wait_for("handler sleeping 0.3")
        server.signal(signal.SIGTERM)
        assert await client.recv() == {"type": "sleep", "id": 5, "ok": True, "data": "slept"}
        assert (await client.wait_closed())[0] == 1001
    assert await server.exit_code() == 0


async def test_second_signal_during_the_drain_exits_at_once(
    start: StartServer, app_dir: Path
) -> None:
    server = await start("run", "app:app", "--app-dir", str(app_dir), "--port", "0", cwd=app_dir)
    async with connect(await server.wait_listening()) as client:
        await client.send({"type": "sleep", "id": 1, "data": 30.0})
        await server.wait_for("handler sleeping 30.0")
        server.signal(signal.SIGTERM)
        await server.wait_for(r"shutting down: closing 1 connection\(s\), waiting up to 30\.0 s")
        server.signal(signal.SIGTERM)
        # Well within the handler's 30 s and the app's 30 s shutdown_timeout.
        assert await server.exit_code(timeout=3) == 1
    await server.wait_for(r"WARNING received SIGTERM again, exiting now$")


async def test_sigint_shuts_down_gracefully(start: StartServer, app_dir: Path) -> None:
    server = await start("run", "app:app", "--app-dir", str(app_dir), "--port", "0", cwd=app_dir)
    async with connect(await server.wait_listening()) as client:
        server.signal(signal.SIGINT)
        assert (await client.wait_closed())[0] == 1001
    assert await server.exit_code() == 0
    await server.wait_for(r"INFO received SIGINT, shutting down gracefully$")


# -- logs and proxies ------------------------------------------------------------------------

REMOTE_APP = """
from wsroute import App, Connection

app = App()


@app.direct("remote")
async def remote(conn: Connection) -> list:
    return list(conn.request.remote)
"""


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, "203.0.113.7"),  # 127.0.0.1 is trusted by default
        (["--no-proxy-headers"], {}, "127.0.0.1"),
        ([], {"WSROUTE_PROXY_HEADERS": "false"}, "127.0.0.1"),
        (["--proxy-headers"], {"WSROUTE_PROXY_HEADERS": "0"}, "203.0.113.7"),
        (["--forwarded-allow-ips", "10.0.0.0/8"], {}, "127.0.0.1"),
        ([], {"WSROUTE_FORWARDED_ALLOW_IPS": "10.0.0.1, 127.0.0.0/8"}, "203.0.113.7"),
    ],
)
async def test_proxy_options(
    start: StartServer, tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    write(tmp_path, {"app.py": REMOTE_APP})
    server = await start("run", "app:app", "--port", "0", *args, cwd=tmp_path, env=child_env(**env))
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    async with connect(await server.wait_listening(), additional_headers=forwarded) as client:
        assert (await client.request("remote"))["data"][0] == expected
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0


@pytest.mark.parametrize(
    ("args", "env", "part"),
    [
        (["--log-format", "xml"], {}, "argument --log-format: expected text or json, not 'xml'"),
        ([], {"WSROUTE_LOG_FORMAT": "JSON"}, "WSROUTE_LOG_FORMAT: expected text or json"),
        (["--forwarded-allow-ips", "proxy.local"], {}, "lists 'proxy.local', which is not an IP"),
        ([], {"WSROUTE_FORWARDED_ALLOW_IPS": "10.0.0.0/40"}, "WSROUTE_FORWARDED_ALLOW_IPS: lists"),
        ([], {"WSROUTE_PROXY_HEADERS": "maybe"}, "expected true or false, not 'maybe'"),
        (["--proxy-headers=yes"], {}, "ignored explicit argument 'yes'"),
    ],
)
async def test_invalid_log_and_proxy_options_exit_2(
    app_dir: Path, args: list[str], env: dict[str, str], part: str
) -> None:
    result = await wsroute_cli("run", "app:app", *args, cwd=app_dir, env=child_env(**env))
    assert result.returncode == 2
    assert part in result.stderr.splitlines()[-1]


# -- TLS ----------------------------------------------------------------------------------


async def test_run_serves_tls_from_certificate_files(
    start: StartServer, app_dir: Path, certs: Certs
) -> None:
    tls = ["--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.key)]
    server = await start("run", "app:app", "--port", "0", *tls, cwd=app_dir)
    listening = r"INFO listening on wss://127\.0\.0\.1:(\d+) \(broker memory://\)$"
    port = int((await server.wait_for(listening))[1])
    async with connect(port, ssl=certs.client_context()) as client:
        assert (await client.request("ping"))["data"] == "pong"
        server.signal(signal.SIGTERM)
        assert (await client.wait_closed())[0] == 1001
    assert await server.exit_code() == 0


async def test_an_encrypted_key_is_read_with_the_password_from_the_environment(
    start: StartServer, app_dir: Path, certs: Certs
) -> None:
    env = child_env(
        WSROUTE_SSL_CERTFILE=str(certs.cert),
        WSROUTE_SSL_KEYFILE=str(certs.encrypted_key),
        WSROUTE_SSL_KEYFILE_PASSWORD=PASSWORD,
    )
    server = await start("run", "app:app", "--port", "0", cwd=app_dir, env=env)
    port = int((await server.wait_for(r"listening on wss://127\.0\.0\.1:(\d+) "))[1])
    url = f"wss://127.0.0.1:{port}/"
    async with wsroute.client.connect(url, ssl_context=certs.client_context()) as client:
        assert await client.request("ping") == "pong"
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0
    assert PASSWORD not in server.stderr


@pytest.mark.parametrize(
    ("options", "parts"),
    [
        (
            lambda c: [
                "--ssl-certfile",
                c.cert,
                "--ssl-keyfile",
                c.encrypted_key,
                "--ssl-keyfile-password",
                "wrong",
            ],
            ["key-encrypted.pem: the password does not decrypt the private key"],
        ),
        (
            # Not prompted for on the terminal: a service has none to answer it.
            lambda c: ["--ssl-certfile", c.cert, "--ssl-keyfile", c.encrypted_key],
            ["the private key is encrypted: give its password with WSROUTE_SSL_KEYFILE_PASSWORD"],
        ),
        (
            lambda c: ["--ssl-certfile", c.cert],
            ["cert.pem holds no private key: name the key's file with --ssl-keyfile"],
        ),
        (
            lambda c: ["--ssl-certfile", c.cert, "--ssl-keyfile", c.cert.parent / "nope.pem"],
            ["cannot load the TLS certificate", "No such file or directory"],
        ),
        (
            lambda c: ["--ssl-certfile", c.cert, "--ssl-keyfile", other_key(c)],
            ["cannot load the TLS certificate", "KEY_VALUES_MISMATCH"],
        ),
        (
            lambda c: ["--ssl-keyfile", c.key],
            ["--ssl-keyfile needs --ssl-certfile (or WSROUTE_SSL_CERTFILE)"],
        ),
        (
            # A password with no effect, as an option without --ssl-certfile would be.
            lambda c: [
                "--ssl-certfile",
                c.cert,
                "--ssl-keyfile",
                c.key,
                "--ssl-keyfile-password",
                PASSWORD,
            ],
            ["a password was given for the private key in", "but the key is not encrypted"],
        ),
    ],
)
async def test_tls_files_that_do_not_fit_are_one_line_and_exit_2(
    app_dir: Path, certs: Certs, options: Any, parts: list[str]
) -> None:
    flags = [str(option) for option in options(certs)]
    result = await wsroute_cli("run", "app:app", "--port", "0", *flags, cwd=app_dir)
    assert_one_line_error(result, 2, *parts)


def other_key(certs: Certs) -> Path:
    """The key of another certificate: it does not fit ``certs.cert``."""
    path = certs.cert.parent / "other-key.pem"
    if not path.exists():
        certs.ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(path))
    return path
