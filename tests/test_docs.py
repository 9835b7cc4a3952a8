"""Every Python block of README.md and docs/*.md runs here, so the docs cannot drift.

Each block is one test, named by its page and the line of its opening fence
(``test_block[docs/handlers.md:298]``); tracebacks show the page's own lines.

How a block runs:

- A block that defines ``test_*`` functions is a pytest module, run the way a reader
  runs it: written to a temporary directory next to the page's files (blocks whose
  first line is ``# app.py``) under the ``pyproject.toml`` lines docs/testing.md shows,
  then run by pytest in a subprocess, one for all pages, started with the first block.
  The block passes when each of its tests passed.
- Any other block runs as a new module under trio, with ``await`` allowed at top level,
  on trio's MockClock with autojump (real time where its check says so). Where the page
  claims behaviour, a check in tests/docchecks.py runs the block and exercises the claim
  with ``wsroute.testing.open_client``. A check may also provide the names a fragment
  takes from its surroundings (``app``, ``conn_id``); its docstring says which.

Markers, an HTML comment on the line before a fence:

- ``<!-- docs: continue -->``: the block continues the page's previous Python block;
  they run together as one module.
- ``<!-- docs: compile-only, why -->``: the block is only compiled: a sketch that names
  the reader's own types, a template for the reader's own broker. Say why.

Any other block that fails is a failing test. Every Python fence is collected (by
tests/doccode.py): a test fails if a page has one the collector misses, or a marker it
does not know.
"""

from __future__ import annotations

import ast
import configparser
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
import trio
import trio.testing

import wsroute.brokers
from wsroute import App
from wsroute.testing import ExpectationFailed, open_client

from .docchecks import CHECKS, check_of, just_run
from .doccode import (
    BLOCKS,
    MARKERS,
    PAGES,
    ROOT,
    Block,
    Outcome,
    PytestRun,
    Runner,
    chain,
    compile_block,
    source,
)

# -- blocks that are pytest modules ------------------------------------------------------


def module_of(block: Block) -> list[Block] | None:
    """The blocks written as the test module ``block`` belongs to, if it is one:
    its chain of ``continue`` blocks, from the head to the last."""
    blocks = PAGES[block.page].python
    index = blocks.index(block)
    head = blocks.index(chain(blocks, block)[0])
    end = index + 1
    while end < len(blocks) and blocks[end].marker == "continue":
        end += 1
    parts = blocks[head:end]
    return parts if any(part.test_names() for part in parts) else None


def module_path(directory: Path, parts: Sequence[Block]) -> Path:
    head = parts[0]
    stem = re.sub(r"\W", "_", head.page.removesuffix(".md"))
    return directory / stem / f"test_{stem}_{head.line}.py"


def pytest_config() -> str:
    """The ``pyproject.toml`` lines docs/testing.md tells the reader to have."""
    (config,) = [
        block
        for block in PAGES["docs/testing.md"].blocks
        if block.info == "toml" and "[tool.pytest.ini_options]" in block.code
    ]
    return config.code


@pytest.fixture(scope="session")
def pytest_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, PytestRun]]:
    """pytest on every test module of the docs, started now, waited for when needed."""
    directory = tmp_path_factory.mktemp("docs")
    (directory / "pyproject.toml").write_text(pytest_config())
    for block in BLOCKS:
        parts = module_of(block)
        if block.file_name is not None:
            files = {path.name for path in directory.rglob("*.py")}
            assert block.file_name not in files, f"{block}: another page has a {block.file_name}"
            parts, path = [block], module_path(directory, [block]).with_name(block.file_name)
        elif parts is not None and parts[0] is block and block.marker != "compile-only":
            path = module_path(directory, parts)
        else:
            continue
        path.parent.mkdir(exist_ok=True)
        path.write_text(source(parts), encoding="utf-8")
    run = PytestRun(directory)
    yield directory, run
    run.kill()


def assert_tests_passed(block: Block, outcome: Outcome, output: str) -> None:
    if outcome.failed:
        reports = "\n\n".join(f"{name}: {report}" for name, report in outcome.failed.items())
        pytest.fail(f"{block}: pytest reports\n{reports}", pytrace=False)
    missing = [name for name in block.test_names() if name not in outcome.passed]
    if missing:
        pytest.fail(f"{block}: {missing} did not pass; pytest says:\n{output}", pytrace=False)


# -- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_block(block: Block, pytest_run: tuple[Path, PytestRun]) -> None:
    if block.marker == "compile-only":
        assert block.why, f"{block}: say why: <!-- docs: compile-only, why -->"
        compile_block(source([block]), str(ROOT / block.page))
        return
    parts = module_of(block)
    if parts is not None:
        directory, run = pytest_run
        outcome = run.outcome(module_path(directory, parts))
        assert_tests_passed(block, outcome, run.output)
        return
    found = check_of(block)
    clock = None if found and found.real_time else trio.testing.MockClock(autojump_threshold=0)
    with ExitStack() as stack:
        runner = Runner(chain(PAGES[block.page].python, block), stack)
        trio.run(found.run if found else just_run, runner, clock=clock)


@pytest.mark.parametrize("page", PAGES)
def test_no_python_block_is_missed(page: str) -> None:
    """A cruder count of Python fences than the parser's: they must agree."""
    text = (ROOT / page).read_text(encoding="utf-8")
    fences = re.findall(r"^[ \t]*(?:`{3,}|~{3,})[ \t]*\{?\.?py", text, re.MULTILINE | re.I)
    assert len(fences) == len(PAGES[page].python)


@pytest.mark.parametrize("page", PAGES)
def test_markers_are_known(page: str) -> None:
    assert not PAGES[page].stray_markers, f"{page}: markers not right before a fence"
    for block in PAGES[page].blocks:
        if block.marker is not None:
            assert block.marker in MARKERS, f"{block}: unknown marker {block.marker!r}"
            assert block.is_python, f"{block}: a marker on a {block.info or 'text'} block"


def test_every_check_has_its_block() -> None:
    for found in CHECKS:
        blocks = [b for b in PAGES[found.page].python if found.anchor in b.code]
        assert len(blocks) == 1, f"{found.run.__name__}: {len(blocks)} blocks match"
        (block,) = blocks
        assert block.marker != "compile-only" and module_of(block) is None, (
            f"{found.run.__name__}: {block} does not run in-process"
        )


def test_pytest_ini_lines() -> None:
    """docs/testing.md's alternative to the pyproject.toml lines says the same."""
    (ini,) = [block for block in PAGES["docs/testing.md"].blocks if block.info == "ini"]
    config = configparser.ConfigParser()
    config.read_string(ini.code)
    assert dict(config["pytest"]) == {"trio_mode": "true"}
    assert "trio_mode = true" in pytest_config()


def test_broker_outline_matches_the_classes() -> None:
    """The compile-only outline in docs/brokers.md names what the classes have."""
    (block,) = [b for b in PAGES["docs/brokers.md"].python if "class BrokerSession(" in b.code]
    for node in ast.parse(block.code).body:
        assert isinstance(node, ast.ClassDef)
        cls = getattr(wsroute.brokers, node.name)
        for member in node.body:
            if isinstance(member, ast.AnnAssign):
                assert isinstance(member.target, ast.Name) and member.value is not None
                name, value = member.target.id, ast.literal_eval(member.value)
                assert getattr(cls, name) == value, f"{node.name}.{name}"
            else:
                assert isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef)
                outline = [arg.arg for arg in (*member.args.args, *member.args.kwonlyargs)]
                real = getattr(cls, member.name).__code__
                names = real.co_varnames[: real.co_argcount + real.co_kwonlyargcount]
                assert list(names) == outline, f"{node.name}.{member.name}"


async def test_expectation_failure_text(autojump_clock: trio.testing.MockClock) -> None:
    """docs/testing.md shows what ``ExpectationFailed`` says: so does the real one."""
    (shown,) = [b for b in PAGES["docs/testing.md"].blocks if b.code.startswith("expected ")]
    app = App(default_topic="items")

    @app.broadcast("create_item")
    async def create_item(name: str) -> dict[str, object]:
        return {"id": 1, "name": name}

    async with open_client(app) as client:
        await client.send("create_item", "pear")  # no id: no acknowledgement
        with pytest.raises(ExpectationFailed) as caught:
            await client.expect_event("delete_item")
    assert str(caught.value) == shown.code.rstrip()
