"""Find the fenced code blocks of Markdown pages, and run their Python.

tests/test_docs.py uses this to execute every Python block of README.md and docs/.
A compiled block keeps its page's line numbers, and a test module written from one is
padded with blank lines to the same end: a traceback names the line a reader sees.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import types
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

#: Info strings that make a fence a Python block.
PYTHON = frozenset({"python", "py", "python3", "py3"})
#: What the HTML comment on the line before a fence may say (see tests/test_docs.py).
MARKERS = frozenset({"continue", "compile-only"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)")
_MARKER = re.compile(r"^\s*<!--\s*docs:\s*(?P<name>[\w-]+)[\s,:;]*(?P<why>.*?)\s*-->\s*$")
_FILE_NAME = re.compile(r"^# (?P<name>[\w.-]+\.py)\b")
_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


@attrs.frozen
class Block:
    """One fenced block of a page."""

    page: str  #: the page, relative to the repository: ``docs/testing.md``
    line: int  #: the line of the opening fence, from 1
    info: str  #: the fence's language, lower-case (``""`` for none)
    code: str  #: the content, dedented to the fence
    marker: str | None  #: the ``<!-- docs: NAME, why -->`` comment right before the fence
    why: str = ""  #: the comment's text after the marker's name

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.info in PYTHON

    @property
    def file_name(self) -> str | None:
        """``app.py`` for a block whose first line is ``# app.py``: a file the page's
        tests import."""
        found = _FILE_NAME.match(self.code)
        return found["name"] if found else None

    def test_names(self) -> list[str]:
        """The ``test_*`` functions this block defines at top level."""
        tree = compile(self.code, str(self), "exec", flags=ast.PyCF_ONLY_AST | _FLAGS)
        return [
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        ]


@attrs.frozen
class Page:
    """A page's blocks, and the markers that precede no block (mistakes)."""

    blocks: list[Block]
    stray_markers: list[int]

    @property
    def python(self) -> list[Block]:
        return [block for block in self.blocks if block.is_python]


def read_page(root: Path, page: str) -> Page:
    """Parse ``root / page`` into its fenced blocks."""
    lines = (root / page).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    markers: dict[int, re.Match[str]] = {}  # line of a marker -> the marker
    used: set[int] = set()
    index = 0
    while index < len(lines):
        marker = _MARKER.match(lines[index])
        if marker:
            markers[index + 1] = marker
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not _closes(lines[end], fence):
            body.append(lines[end].removeprefix(indent))
            end += 1
        before = index  # the line number of the line before the fence, from 1
        while before > 0 and not lines[before - 1].strip():
            before -= 1
        found = markers.get(before)
        if found is not None:
            used.add(before)
        code = "\n".join(body) + "\n" if body else ""
        name, why = (found["name"], found["why"]) if found else (None, "")
        blocks.append(Block(page, index + 1, opening["info"].lower(), code, name, why))
        index = end + 1
    return Page(blocks, sorted(set(markers) - used))


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0])


def chain(blocks: Sequence[Block], block: Block) -> list[Block]:
    """``block`` after the blocks it continues (``<!-- docs: continue -->``)."""
    parts = [block]
    index = blocks.index(block)
    while parts[0].marker == "continue":
        if index == 0:
            raise ValueError(f"{block}: marked 'continue', but no Python block comes before it")
        index -= 1
        parts.insert(0, blocks[index])
    return parts


def source(parts: Sequence[Block]) -> str:
    """The code of ``parts`` as one module, each part at its line of the page."""
    text = ""
    for part in parts:
        text += "\n" * (part.line - text.count("\n")) + part.code
    return text


def compile_block(text: str, filename: str) -> types.CodeType:
    """Compile a block's :func:`source`; ``await`` at top level is allowed.

    The module's code starts at the block's first line rather than at line 1, so that
    a traceback shows the block, not the page above it.
    """
    body = text.lstrip("\n")
    code = compile(body, filename, "exec", flags=_FLAGS, dont_inherit=True)
    return _shifted(code, len(text) - len(body))


def _shifted(code: types.CodeType, lines: int) -> types.CodeType:
    # Line tables count from co_firstlineno, so moving it moves every line.
    consts = tuple(
        _shifted(const, lines) if isinstance(const, types.CodeType) else const
        for const in code.co_consts
    )
    return code.replace(co_firstlineno=code.co_firstlineno + lines, co_consts=consts)


@contextmanager
def fresh_module(name: str, names: Mapping[str, Any]) -> Iterator[types.ModuleType]:
    """An empty module holding ``names``, importable as ``name`` while in use.

    Registered in ``sys.modules`` because attrs and cattrs resolve string annotations
    through the module of a class.
    """
    module = types.ModuleType(name)
    module.__dict__.update(names)
    sys.modules[name] = module
    try:
        yield module
    finally:
        del sys.modules[name]


async def execute(code: types.CodeType, module: types.ModuleType) -> None:
    """Run ``code`` in ``module``, awaiting it if it awaits at top level."""
    if code.co_flags & inspect.CO_COROUTINE:
        await eval(code, module.__dict__)
    else:
        exec(code, module.__dict__)


class Runner:
    """``await run(**names)`` runs a block, after the blocks it continues, as a new module
    holding ``names``, and returns the module. It stays importable until the test ends."""

    def __init__(self, parts: Sequence[Block], stack: ExitStack) -> None:
        self.parts = parts
        self.block = parts[-1]
        self._stack = stack
        self._count = 0

    async def __call__(
        self, *, replace: Mapping[str, str] = {}, in_thread: bool = False, **names: Any
    ) -> types.ModuleType:
        """Run the block. ``replace`` substitutes text first (a URL, say); ``in_thread``
        runs it in a worker thread, for code that starts its own event loop."""
        text = source(self.parts)
        for old, new in replace.items():
            assert old in text, f"{self.block}: {old!r} is not in the block"
            text = text.replace(old, new)
        code = compile_block(text, str(ROOT / self.block.page))
        module = self._module(names)
        if in_thread:
            await trio.to_thread.run_sync(exec, code, module.__dict__)
        else:
            await execute(code, module)
        return module

    def load_example(self, name: str) -> types.ModuleType:
        """A new copy of ``examples/<name>/app.py``, with its own state."""
        path = ROOT / "examples" / name / "app.py"
        module = self._module({"__file__": str(path)})
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
        return module

    def _module(self, names: Mapping[str, Any]) -> types.ModuleType:
        self._count += 1
        stem = re.sub(r"\W", "_", f"{self.block.page}_{self.block.line}")
        return self._stack.enter_context(fresh_module(f"docs_{stem}_{self._count}", names))


# -- running blocks that are pytest modules ------------------------------------------------


@attrs.frozen
class Outcome:
    """What pytest reported for one test module."""

    passed: list[str]  #: test names (without parameters), once per passing case
    failed: dict[str, str]  #: test name (or the module, for a collection error) -> report


class PytestRun:
    """pytest, in a subprocess, on a directory of test modules written from the docs.

    Started at once, waited for on the first :meth:`outcome`, so that the blocks run
    in-process meanwhile.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._report = directory / "report.xml"
        self._log = directory / "output.txt"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTEST_", "PYTHONPATH"))
        }
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-o", "junit_family=xunit1", f"--junitxml={self._report}", str(directory)]
        with self._log.open("wb") as log:  # a file, not a pipe: nothing waits on a reader
            self._process = subprocess.Popen(
                command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._outcomes: dict[str, Outcome] | None = None
        self.output = ""

    def outcome(self, module_path: Path) -> Outcome:
        """The results of the test module at ``module_path``."""
        if self._outcomes is None:
            self._process.wait(timeout=120)
            self.output = self._log.read_text(encoding="utf-8", errors="replace")
            self._outcomes = self._parse()
        relative = module_path.relative_to(self._directory).as_posix()
        return self._outcomes.get(relative, Outcome([], {relative: "not run:\n" + self.output}))

    def _parse(self) -> dict[str, Outcome]:
        if not self._report.exists():
            return {}
        outcomes: dict[str, Outcome] = {}
        for case in ElementTree.parse(self._report).iter("testcase"):
            file = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
            outcome = outcomes.setdefault(file, Outcome([], {}))
            name = case.get("name", "").partition("[")[0] or file
            problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
            if problems:
                problem = problems[0]
                outcome.failed[name] = f"{problem.tag}: {problem.get('message')}\n{problem.text}"
            else:
                outcome.passed.append(name)
        return outcomes

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


#: The repository, and the pages whose Python blocks tests/test_docs.py runs.
ROOT = Path(__file__).resolve().parent.parent
PAGES: dict[str, Page] = {
    name: read_page(ROOT, name)
    for name in ["README.md", *(f"docs/{path.name}" for path in sorted(ROOT.glob("docs/*.md")))]
}
BLOCKS = [block for page in PAGES.values() for block in page.python]
