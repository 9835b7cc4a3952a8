"""The architecture's rules, checked on the code (docs/design.md): import-linter's
contracts in pyproject.toml, and no private member of any dependency."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "wsroute"
#: Every third-party package wsroute imports.
DEPENDENCIES = frozenset(
    {"trio", "trio_websocket", "attrs", "attr", "cattrs", "orjson", "msgpack", "coredis", "outcome"}
)
#: Names of private members of dependencies that wsroute once used: never again.
FORMER_PRIVATE_USES = frozenset(
    {
        "_impl",
        "_wsproto",
        "_proto",
        "_frame_decoder",
        "_message_decoder",
        "_close_reason",
        "_reader_task",
        "_send_channel",
        "_stream_lock",
        "_structure_tuple",
        "_structure_set",
        "_structure_frozenset",
    }
)


def lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    return found


def test_import_contracts_are_kept() -> None:
    done = subprocess.run(
        [lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def private_uses(source: str) -> list[str]:
    """Where ``source`` reaches a private member of a dependency."""
    tree = ast.parse(source)
    aliases: set[str] = set()  # names bound to a dependency's module
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root, *rest = alias.name.split(".")
                if root in DEPENDENCIES:
                    if any(part.startswith("_") for part in rest):
                        problems.append(f"line {node.lineno}: imports {alias.name}")
                    aliases.add(alias.asname or root)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            root, *rest = node.module.split(".")
            if root in DEPENDENCIES:
                if any(part.startswith("_") for part in rest):
                    problems.append(f"line {node.lineno}: imports from {node.module}")
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        problems.append(f"line {node.lineno}: imports {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in aliases:
                problems.append(f"line {node.lineno}: {base.id}.{name}")
            elif name in FORMER_PRIVATE_USES:
                problems.append(f"line {node.lineno}: .{name}")
    return sorted(problems, key=lambda problem: int(problem.split(":")[0].split()[1]))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_member_of_a_dependency(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8")) == []


def test_the_private_member_check_finds_them() -> None:
    source = """
import trio
import trio_websocket as tw
from trio_websocket._impl import RECEIVE_BYTES
from cattrs import _private
trio._core.current_task()
tw._something
converter._structure_tuple
ws._wsproto
self._own_attribute
trio.__name__
"""
    assert private_uses(source) == [
        "line 4: imports from trio_websocket._impl",
        "line 5: imports _private",
        "line 6: trio._core",
        "line 7: tw._something",
        "line 8: ._structure_tuple",
        "line 9: ._wsproto",
    ]


def test_no_other_websocket_library_in_the_server() -> None:
    """The server's WebSocket is wsroute's own (wsroute._wire); trio-websocket is the
    Python client's, on its public API."""
    for path in sources():
        if path.is_relative_to(PACKAGE / "client"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                assert name.split(".")[0] not in ("wsproto", "h11", "trio_websocket"), (
                    f"{path.relative_to(ROOT)} imports {name}"
                )
