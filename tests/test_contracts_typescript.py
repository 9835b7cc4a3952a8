"""TypeScript declarations (wsroute/contracts/typescript.py): what each type becomes,
and, with ``tsc --noEmit``, that the declarations of tests/contracts_app.py make
tests/js/contracts/usage.ts compile against the JavaScript client's ``.d.ts`` and
tests/js/contracts/mistakes.ts fail on exactly its marked lines, with the marked codes."""

from __future__ import annotations

import datetime
import enum
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest

from wsroute import App
from wsroute._errors import SchemaError
from wsroute.contracts.typescript import typescript

from .cliproc import REPO, assert_one_line_error, wsroute_cli
from .test_contracts_asyncapi import FEATURES, HOOKED, load
from .test_js_client import JS, check_node_modules, find_node

FIXTURES = JS / "contracts"
CLIENT = REPO / "wsroute" / "static" / "wsroute.js"
TSC = JS / "node_modules" / "typescript" / "bin" / "tsc"
#: The options of tests/js/types/tsconfig.json: strict, and exact optional types.
OPTIONS = {
    "target": "es2022",
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "lib": ["es2022", "dom"],
    "types": [],
    "strict": True,
    "exactOptionalPropertyTypes": True,
    "noUnusedLocals": True,
    "noEmit": True,
    "skipLibCheck": False,
}


class Colour(enum.Enum):
    RED = "red"
    ONE = 1


@attrs.frozen
class Point:
    """A point.

    On the plane."""

    x: float
    y: float


@attrs.frozen
class Shape:
    points: list[Point]
    kind: Literal["open", "closed"]
    colour: Colour | None
    pair: tuple[int, str]
    rest: tuple[int, ...]
    nothing: tuple[()]
    names: dict[str, list[int]]
    numbered: dict[int, bool]
    data: bytes
    when: datetime.datetime
    label: str = ""


@attrs.frozen
class Requests:
    """A class named like the route map."""

    n: int


def declarations(app: App) -> str:
    return typescript(app)


def test_what_each_type_becomes() -> None:
    app = App()

    @app.direct("draw")
    async def draw(shape: Shape) -> Point:
        return Point(0, 0)

    text = declarations(app)
    assert "/**\n * A point.\n *\n * On the plane.\n */\nexport interface Point {" in text
    shape = text[text.index("export interface Shape {") :]
    shape = shape[: shape.index("}\n")]
    for line in (
        "points: Point[];",
        'kind: "open" | "closed";',
        "colour: Colour | null;",
        "pair: [number, string];",
        "rest: number[];",
        "nothing: [];",
        "names: { [key: string]: number[] };",
        "numbered: { [key: string]: boolean };",
        "data: Bytes;",
        "when: string;",
        "label?: string;",
    ):
        assert f"  {line}\n" in shape, line
    assert 'export type Colour = "red" | 1;' in text
    assert "export type Bytes = string | Uint8Array;" in text
    assert "  draw: { data: Shape; reply: Point };" in text


def test_bytes_are_text_where_the_app_speaks_no_msgpack() -> None:
    app = App(subprotocols=["wsroute.v1.json"])

    @app.direct("put")
    async def put(data: bytes) -> None:
        pass

    text = declarations(app)
    assert "export type Bytes = string;" in text
    assert "  put: { data: Bytes; reply: null };" in text


def test_names_never_clash_with_the_route_maps() -> None:
    app = App()

    @app.direct("count")
    async def count(requests: Requests) -> int:
        return requests.n

    text = declarations(app)
    assert "export interface Requests_2 {\n  n: number;\n}" in text
    assert "  count: { data: Requests_2; reply: number };" in text
    assert text.count("export interface Requests {") == 1


def test_route_maps_quote_odd_names_and_merge_events() -> None:
    app = App()
    app.declare_event("news", str, topic="news:{id}")
    app.declare_event("news", int)
    app.declare_event("bare")

    @app.broadcast("news", topic="news:1")
    async def news(text: str) -> str | None:
        return text

    @app.direct("a b", timeout=1)
    async def odd(n: int = 0) -> Any:
        return n

    text = declarations(app)
    assert '  "a b": { data: number | null; reply: unknown };' in text
    assert "  news: { data: string; reply: string | null };" in text
    assert "  news: string | number;" in text  # the broadcast and both declarations
    assert "  bare: null;" in text


def test_the_presence_requests_are_typed_where_the_app_keeps_presence() -> None:
    entry = "{ connection: string; user: string | null; meta: unknown }"
    text = declarations(App(presence=["room:*"]))
    assert f'  "wsroute.presence": {{ data: {{ topic: string }}; reply: {entry}[] }};' in text
    stats = "{ connections: number; users: number }"
    assert f'  "wsroute.presence_stats": {{ data: {{ topic: string }}; reply: {stats} }};' in text
    assert "wsroute.join" not in text  # no events without Presence(events=True)
    assert "wsroute.presence" not in declarations(App())


def test_a_type_without_a_schema_has_no_declaration() -> None:
    app = App()
    app.declare_event("when", datetime.time)
    with pytest.raises(SchemaError, match="'when'"):
        declarations(app)


def test_keywords_that_only_constrain_a_value_leave_its_type() -> None:
    app = App()
    app.converter.register_structure_hook(datetime.time, lambda v, _: datetime.time(0))

    @app.direct("at")
    async def at(when: datetime.time) -> None: ...

    constrained = {"type": "string", "format": "time", "minLength": 5, "examples": ["10:00"]}
    assert "  at: { data: string; reply: null };" in typescript(
        app, overrides={datetime.time: constrained}
    )
    # A keyword that changes what a value may be, which TypeScript cannot say: refused.
    with pytest.raises(SchemaError, match=r"schema keyword\(s\) not"):
        typescript(app, overrides={datetime.time: {"type": "string", "not": {"const": ""}}})


# -- compiled with tsc -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tsc() -> list[str]:
    node, _ = find_node()
    check_node_modules()
    return [node, str(TSC), "--noEmit", "--pretty", "false", "-p"]


def compile_with(tsc: list[str], directory: Path, source: str, app: App) -> tuple[int, str]:
    """Compile ``source`` (a file of tests/js/contracts) next to ``app``'s declarations."""
    (directory / "app.ts").write_text(typescript(app))
    client = os.path.relpath(CLIENT, directory)
    text = (FIXTURES / source).read_text().replace('from "wsroute"', f'from "{client}"')
    (directory / source).write_text(text)
    config = {"compilerOptions": OPTIONS, "files": [source]}
    (directory / "tsconfig.json").write_text(json.dumps(config))
    done = subprocess.run(
        [*tsc, str(directory / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_declarations_type_the_client(
    tsc: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, output = compile_with(tsc, tmp_path, "usage.ts", load(FEATURES, monkeypatch).app)
    assert status == 0, output


def test_mistakes_fail_to_compile_where_marked(
    tsc: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, output = compile_with(tsc, tmp_path, "mistakes.ts", load(FEATURES, monkeypatch).app)
    assert status != 0, "the mistakes compiled"
    marked = {
        i + 1: match[1]
        for i, line in enumerate((FIXTURES / "mistakes.ts").read_text().splitlines())
        if (match := re.search(r"// error (TS\d+)$", line))
    }
    found: dict[int, str] = {}
    for line, code in re.findall(r"mistakes\.ts\((\d+),\d+\): error (TS\d+)", output):
        found.setdefault(int(line), code)  # the first error of each line
    assert len(marked) >= 15
    assert found == marked, output


async def test_the_command_writes_the_declarations(tmp_path: Path) -> None:
    out = tmp_path / "api.ts"
    done = await wsroute_cli(
        "typescript", "app:app", "--app-dir", str(REPO / "examples" / "items"), "-o", str(out)
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    text = out.read_text()
    assert "  create_item: { data: CreateItem; reply: Item };" in text
    assert "  welcome: Welcome;" in text
    done = await wsroute_cli("typescript", "nowhere:app", "--app-dir", str(tmp_path))
    assert_one_line_error(done, 2, "nowhere")


async def test_the_command_takes_overrides(tmp_path: Path) -> None:
    (tmp_path / "hooked.py").write_text(HOOKED)
    at = ["--app-dir", str(tmp_path)]
    done = await wsroute_cli("typescript", "hooked:app", *at)
    assert_one_line_error(done, 1, "'take'", "--overrides MODULE:ATTR")
    # The dict given to asyncapi serves: format and the like constrain a string.
    done = await wsroute_cli("typescript", "hooked:app", *at, "--overrides", "hooked:schemas")
    assert (done.returncode, done.stderr) == (0, "")
    assert "  take: { data: string; reply: null };" in done.stdout, done.stdout
    done = await wsroute_cli("typescript", "hooked:app", *at, "--overrides", "hooked:wrong")
    assert_one_line_error(done, 2, "--overrides 'hooked:wrong' is a list")


def test_the_page_shows_what_the_items_example_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    page = (REPO / "docs" / "contracts.md").read_text()
    shown = page[page.index("For [examples/items]") :]
    shown = shown[shown.index("```ts\n") + 6 : shown.index("```\n", shown.index("```ts\n"))]
    written = typescript(load(REPO / "examples" / "items" / "app.py", monkeypatch).app)
    blocks = [block.strip() for block in shown.split("\n\n") if block.strip()]
    assert len(blocks) == 3
    for block in blocks:
        assert block in written, block
