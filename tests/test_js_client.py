"""The JavaScript client (wsroute/static/wsroute.js) through its Node tests in tests/js.

Each ``tests/js/*.test.mjs`` file is one pytest item, run with ``node --test``. The
Node tests start ``python -m wsroute run app:app --app-dir tests/js`` themselves,
with this interpreter (``WSROUTE_PYTHON``), and ``types.test.mjs`` runs ``tsc
--noEmit`` on the declarations. They need Node >= 18.15 and ``npm ci`` in tests/js;
without them they skip with the reason (and fail under CI, see tests/needs.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .needs import missing

JS = Path(__file__).resolve().parent / "js"
TEST_FILES = sorted(path.name for path in JS.glob("*.test.mjs"))
MIN_NODE = (18, 15)  # node:test with --test-reporter and t.after
# A bound on one file's run; each normally takes a few seconds.
TIMEOUT = 120.0


def find_node() -> tuple[str, tuple[int, int]]:
    """The ``node`` to run the tests with and its version; skips (fails under CI) if unfit."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (Node >= 18.15 runs the JavaScript client's tests)")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+.*", version)
    if match is None or (int(match[1]), int(match[2])) < MIN_NODE:
        missing(f"node {version or '(unknown version)'} is too old: the tests need >= 18.15")
    return node, (int(match[1]), int(match[2]))


def check_node_modules() -> None:
    """Every devDependency of tests/js/package.json is installed in its node_modules."""
    wanted = json.loads((JS / "package.json").read_text())["devDependencies"]
    absent = [name for name in wanted if not (JS / "node_modules" / name / "package.json").exists()]
    if absent:
        missing(
            f"tests/js/node_modules lacks {', '.join(sorted(absent))}: run `npm ci` in tests/js"
        )


@pytest.fixture(scope="module")
def node() -> list[str]:
    """The command that starts node, with the options the tests need on this version."""
    # Sync on purpose: a skip raised in an async fixture loses its reason in pytest-trio.
    found, version = find_node()
    check_node_modules()
    # Node 22 has a global WebSocket; on 20.10-21 a flag turns it on, so that the
    # client is tested with it as well as with the ws package.
    flags = ["--experimental-websocket"] if (20, 10) <= version < (22, 0) else []
    return [found, *flags]


def run_node_tests(node: list[str], test_file: str) -> subprocess.CompletedProcess[str]:
    """``node --test test_file`` in tests/js; on timeout, kill it and the servers it started."""
    env = {**os.environ, "WSROUTE_PYTHON": sys.executable, "NO_COLOR": "1"}
    env.pop("NODE_OPTIONS", None)
    with subprocess.Popen(
        [*node, "--test", "--test-reporter=spec", test_file],
        cwd=JS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a timeout can end every child
    ) as process:
        try:
            output, _ = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"node --test {test_file} ran over {TIMEOUT:.0f} s:\n{output}")
    return subprocess.CompletedProcess(process.args, process.returncode, output, "")


@pytest.mark.parametrize("test_file", TEST_FILES)
def test_node(node: list[str], test_file: str) -> None:
    result = run_node_tests(node, test_file)
    assert result.returncode == 0, f"node --test {test_file} failed:\n{result.stdout}"
    # The spec reporter ends with a summary ("<info sign> pass 12"): tests ran, none failed.
    counts = dict(re.findall(r"^\S+ (pass|fail|cancelled) (\d+)$", result.stdout, re.MULTILINE))
    assert int(counts.get("pass", 0)) > 0, result.stdout
    assert counts.get("fail") == counts.get("cancelled") == "0", result.stdout
