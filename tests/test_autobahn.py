"""RFC 6455 conformance of wsroute itself: the Autobahn test cases, run by ``kosoku``.

``kosoku`` (PyPI, in the ``test`` extra) is a native runner of the Autobahn TestSuite
case files. It drives the echo app in ``tests/autobahn_app.py`` (a frame handler, so
every frame goes through wsroute's reader, workers, outbox and writer) served on
127.0.0.1, then the test reads the Autobahn-format ``index.json`` it writes.

Two runs: every case but groups 12 and 13 against the plain app, then groups 12 and
13 (permessage-deflate, 216 cases) against the same app with compression on. Each
case must end OK, NON-STRICT or INFORMATIONAL, both for the message exchange and for
the closing handshake. Results and timing are recorded in docs/conformance.md.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from wsroute import App

from .autobahn_app import app, compressed_app

#: Cases of groups 1-10, as of kosoku 0.1.0.
EXPECTED_CASES = 301
#: Cases of groups 12 and 13 (permessage-deflate).
EXPECTED_COMPRESSION_CASES = 216
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
#: Cases run at once. The plain run takes about 8 s at 4, 17 s at 1; the compressed
#: one about 5 minutes on two cores, nearly all of it zlib's (both sides).
PARALLELISM = 4
#: Upper bound for one run, generous for slow CI machines.
TIMEOUT = 1500


def kosoku_command() -> str:
    beside_python = Path(sys.executable).parent / "kosoku"
    found = str(beside_python) if beside_python.is_file() else shutil.which("kosoku")
    if found is None:
        pytest.fail("kosoku is not installed: pip install -e '.[test]'")
    return found


def describe_failure(outdir: Path, entry: dict[str, Any]) -> str:
    """One line per failed case: its verdicts and Autobahn's explanation."""
    case = json.loads((outdir / entry["reportfile"]).read_text())
    return (
        f"{case['id']}: {case['behavior']}/{case['behaviorClose']}"
        f" (close code {case['remoteCloseCode']}): {case['result']} {case['resultClose']}"
        f" -- {case['description'][:120]}"
    )


@pytest.mark.parametrize(
    ("served", "selection", "expected"),
    [
        pytest.param(app, ["-x", "12.*", "-x", "13.*"], EXPECTED_CASES, id="RFC 6455"),
        pytest.param(
            compressed_app,
            ["-i", "12.*", "-i", "13.*"],
            EXPECTED_COMPRESSION_CASES,
            id="permessage-deflate",
        ),
    ],
)
async def test_autobahn_conformance(
    nursery: trio.Nursery, tmp_path: Path, served: App, selection: list[str], expected: int
) -> None:
    port = await nursery.start(served.serve, "127.0.0.1", 0)
    outdir = tmp_path / "reports"
    command = [
        kosoku_command(),
        f"ws://127.0.0.1:{port}",
        *selection,
        "-p",
        str(PARALLELISM),
        "-o",
        str(outdir),
    ]
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    output = (done.stdout + done.stderr).decode(errors="replace")
    index_file = outdir / "index.json"
    assert index_file.is_file(), f"kosoku wrote no report (exit {done.returncode}):\n{output}"
    [results] = json.loads(index_file.read_text()).values()  # one agent: our server

    failed = [
        describe_failure(outdir, entry)
        for entry in results.values()
        if entry["behavior"] not in ACCEPTED or entry["behaviorClose"] not in ACCEPTED
    ]
    assert not failed, "Autobahn cases not passed:\n" + "\n".join(failed)
    assert len(results) == expected, sorted(results)
    compression_cases = [case for case in results if case.startswith(("12.", "13."))]
    assert len(compression_cases) == (expected if served is compressed_app else 0)
    assert done.returncode == 0, output
    counts = Counter(entry["behavior"] for entry in results.values())
    print(f"Autobahn: {dict(counts)} in {len(results)} cases")
    served.shutdown()
