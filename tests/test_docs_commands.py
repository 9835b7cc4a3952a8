"""Every ``wsroute`` command line the docs show parses with the real command line.

Docs are code: a flag renamed or removed fails here, not in a reader's terminal. The
lines come from the shell blocks of README.md and docs/*.md (``sh``, ``bash``,
``shell``, ``console``), from ``ExecStart=`` in ``ini`` blocks (systemd units) and
from the exec-form ``CMD``/``ENTRYPOINT`` of ``dockerfile`` blocks. Each is parsed by
``wsroute._cli``'s own argparse parser, its ``WSROUTE_*`` assignments resolved the way
``main`` resolves them: no process is started. The options table of docs/cli.md is
checked against the parser too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex

import pytest

from wsroute import _options

from .doccode import PAGES, ROOT, Block

SHELL = frozenset({"sh", "bash", "shell", "console"})
_OPERATORS = frozenset({"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _logical_lines(code: str) -> list[str]:
    """Lines with backslash continuations joined, prompts and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in code.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = line.removeprefix("$ ")
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _command(words: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """``(environment, argv)`` of the ``wsroute`` command among ``words``, if any."""
    env: dict[str, str] = {}
    for index, word in enumerate(words):
        if word.split("/")[-1] == "wsroute":
            start = index + 1
        elif word.startswith("python") and words[index + 1 : index + 3] == ["-m", "wsroute"]:
            start = index + 3
        elif _ASSIGNMENT.match(word):
            name, _, value = word.partition("=")
            env[name] = value
            continue
        else:
            env = {}  # assignments count only right before the command
            continue
        argv: list[str] = []
        for arg in words[start:]:
            if arg in _OPERATORS:
                break
            argv.append(arg)
        return env, argv
    return None


def commands(block: Block) -> list[tuple[dict[str, str], list[str]]]:
    found = []
    for line in _logical_lines(block.code):
        if block.info in SHELL:
            words = shlex.split(line, comments=True)
        elif block.info == "ini" and line.startswith("ExecStart="):
            words = shlex.split(line.removeprefix("ExecStart=").lstrip("-@+!"))
        elif block.info == "dockerfile" and re.match(r"(CMD|ENTRYPOINT) \[", line):
            words = json.loads(line.split(" ", 1)[1])
        else:
            continue
        command = _command(words)
        if command is not None:
            found.append(command)
    return found


LINES = [
    pytest.param(env, argv, id=f"{block}:{' '.join(argv)}")
    for page in PAGES.values()
    for block in page.blocks
    for env, argv in commands(block)
]


def parse(env: dict[str, str], argv: list[str]) -> argparse.Namespace | None:
    """``argv`` as ``main`` parses it, or a failure with argparse's message."""
    parser, subparsers = _options.build_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(argv)
            if args.command is not None:
                _options.resolve(
                    args, _options.OPTIONS[args.command], env, subparsers[args.command]
                )
    except SystemExit as exit:
        if exit.code == 0:  # --help, --version
            return None
        pytest.fail(f"wsroute {' '.join(argv)}: {stderr.getvalue().strip()}")
    return args


@pytest.mark.parametrize(("env", "argv"), LINES)
def test_the_docs_command_lines_parse(env: dict[str, str], argv: list[str]) -> None:
    parse(env, argv)


def test_the_docs_show_commands_of_every_kind() -> None:
    """The collector finds what the pages hold: a change that hides them fails here."""
    pages = {line.id.split(":")[0] for line in LINES if line.id}
    assert {"README.md", "docs/cli.md", "docs/deployment.md"} <= pages
    argvs = [line.values[1] for line in LINES]
    assert any(argv[:1] == ["routes"] for argv in argvs)
    assert any(argv[:2] == ["run", "chat.server:app"] for argv in argvs)
    deployment = [b for b in PAGES["docs/deployment.md"].blocks if b.info in ("ini", "dockerfile")]
    assert all(commands(block) for block in deployment)


def test_a_bad_line_would_fail() -> None:
    with pytest.raises(pytest.fail.Exception, match="unrecognized arguments: --wrokers"):
        parse({}, ["run", "app:app", "--wrokers", "4"])
    with pytest.raises(pytest.fail.Exception, match="WSROUTE_PORT: invalid port"):
        parse({"WSROUTE_PORT": "http"}, ["run", "app:app"])
    env, argv = commands(
        Block("x.md", 1, "sh", "A=1 WSROUTE_PORT=9 wsroute run a:b | cat\n", None)
    )[0]
    assert (env, argv) == ({"A": "1", "WSROUTE_PORT": "9"}, ["run", "a:b"])


def test_docs_cli_md_names_every_option_and_its_variable() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for option in _options.OPTIONS["run"]:
        assert f"| `{option.flag}" in text, f"docs/cli.md has no row for {option.flag}"
    for options in _options.OPTIONS.values():
        for option in options:
            assert f"`{option.flag}" in text, f"docs/cli.md does not name {option.flag}"
            assert f"`{option.env}" in text, f"docs/cli.md does not name {option.env}"
