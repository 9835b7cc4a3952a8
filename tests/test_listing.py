"""What ``wsroute routes`` prints (``wsroute._listing``): the JSON document holds
what the table shows. Through the real command, as a child process."""

from __future__ import annotations

import json
from pathlib import Path

from .cliproc import child_env, write, wsroute_cli


async def test_routes_json_holds_what_the_table_shows(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "rooms.py": """
            import attrs

            import wsroute
            from wsroute import App, Connection

            app = App(
                subprotocols=["chat.v2"],
                compression=wsroute.Deflate(threshold=256),
            )

            @attrs.frozen
            class Msg:
                room: str

            def room_of(msg, conn):
                return msg.room

            @app.direct("lookup", coalesce=True, timeout=2.5)
            async def lookup(key: str) -> list[Msg] | None:
                return None

            @app.broadcast("say", topic=room_of, exclude_sender=True)
            async def say(msg: Msg, conn: Connection) -> Msg:
                return msg

            @app.broadcast("ping", topic="pings")
            async def ping() -> None:
                return None
            """
        },
    )
    table = await wsroute_cli("routes", "rooms:app", cwd=tmp_path)
    result = await wsroute_cli("routes", "rooms:app", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    base = {"timeout": None, "coalesce": False, "exclude_sender": False, "topic_function": None}
    assert document["handlers"] == [
        {**base, "type": "lookup", "kind": "direct", "payload": "str",
         "result": "list[Msg] | None", "topic": None, "timeout": 2.5, "coalesce": True},
        {**base, "type": "say", "kind": "broadcast", "payload": "Msg", "result": "Msg",
         "topic": None, "topic_function": "rooms.room_of", "exclude_sender": True},
        {**base, "type": "ping", "kind": "broadcast", "payload": None, "result": "None",
         "topic": "pings"},
    ]  # fmt: skip
    assert document["subprotocols"] == ["chat.v2"]
    assert document["require_subprotocol"] is False
    assert document["compression"]["threshold"] == 256
    assert document["compression"]["server_context_takeover"] is False
    # Row for row, the table says the same (its columns start where its headings do).
    header, *lines = table.stdout.partition("\n\n")[0].splitlines()
    starts = [header.index(name) for name in ("TYPE", "KIND", "PAYLOAD", "RESULT", "TOPIC")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    rows = [[line[a:b].strip() for a, b in bounds] for line in lines]
    assert rows == [
        [
            handler["type"],
            handler["kind"],
            handler["payload"] or "-",
            handler["result"] or "-",
            handler["topic"]
            or (f"<fn {handler['topic_function']}>" if handler["topic_function"] else "-"),
        ]
        for handler in document["handlers"]
    ]


async def test_routes_format_from_the_environment_and_bad_values() -> None:
    env = child_env(WSROUTE_ROUTES_FORMAT="json")
    result = await wsroute_cli("routes", "--app-dir", "examples/items", "app:app", env=env)
    assert next(h["type"] for h in json.loads(result.stdout)["handlers"]) == "list_items"
    result = await wsroute_cli("routes", "--app-dir", "examples/items", "app:app", "--format", "x")
    assert result.returncode == 2
    assert "argument --format: expected table or json, not 'x'" in result.stderr


async def test_routes_lists_the_paths_plain_gets_are_answered_at(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "webapp.py": """
            from pathlib import Path

            from wsroute import App, Request

            app = App(
                asyncapi="/asyncapi.json",
                client_path="/js/wsroute.js",
                ready_path=None,
                metrics_path="/internal/metrics",
            )
            app.add_static("/static/", Path(__file__).parent / "public")
            app.add_static("/", Path(__file__).parent / "public")

            @app.get("/hello")
            async def hello() -> str:
                return "hello"

            @app.get("/whoami")
            async def whoami(request: Request) -> str:
                return request.path
            """,
            "public/index.html": "<p>hi</p>",
        },
    )
    public = tmp_path / "public"
    expected = [
        ("/*", f"static files at '/' ({public})"),
        ("/asyncapi.json", "the AsyncAPI document"),
        ("/healthz", "the health check (App option health_path)"),
        ("/hello", "webapp.hello"),
        ("/internal/metrics", "the metrics (App option metrics_path)"),
        ("/js/wsroute.js", "the JavaScript client"),
        ("/static/*", f"static files at '/static/' ({public})"),
        ("/whoami", "webapp.whoami"),
    ]
    table = await wsroute_cli("routes", "webapp:app", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    section = table.stdout.split("\n\n")[1].splitlines()
    assert section[0].split() == ["GET", "PATH", "ANSWERED", "BY"]
    width = section[0].index("ANSWERED BY")
    assert [(line[:width].strip(), line[width:]) for line in section[1:]] == expected
    result = await wsroute_cli("routes", "webapp:app", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["http"] == [
        {"path": path, "answered_by": what} for path, what in expected
    ]


async def test_routes_without_plain_paths_has_no_such_section(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "bare.py": """
            from wsroute import App

            app = App(client_path=None, health_path=None, ready_path=None, metrics_path=None)
            """
        },
    )
    result = await wsroute_cli("routes", "bare:app", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "GET PATH" not in result.stdout
    assert result.stdout.split("\n\n")[1].startswith("SUBPROTOCOLS")
    result = await wsroute_cli("routes", "bare:app", "--format", "json", cwd=tmp_path)
    assert json.loads(result.stdout)["http"] == []
