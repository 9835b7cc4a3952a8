"""RFC 6455 conformance of wsroute itself: the Autobahn test cases, run by ``kosoku``.

``kosoku`` (PyPI, in the ``test`` extra) is a native runner of the Autobahn TestSuite
case files. It drives the echo app in ``tests/autobahn_app.py`` (a frame handler, so
every frame goes through wsroute's reader, workers, outbox and writer) served on
127.0.0.1, then the test reads the Autobahn-format ``index.json`` it writes.

Every case runs except groups 12 and 13, which test permessage-deflate compression:
wsroute (like trio-websocket) does not negotiate it, so they would all report
UNIMPLEMENTED. Each remaining case must end OK, NON-STRICT or INFORMATIONAL, both
for the message exchange and for the closing handshake. Results and timing are
recorded in docs/conformance.md.
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

from .autobahn_app import app

#: Compression (permessage-deflate), which wsroute does not offer.
EXCLUDED = ("12.*", "13.*")
#: Cases of groups 1-10 other than 12 and 13, as of kosoku 0.1.0.
EXPECTED_CASES = 301
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
#: Cases run at once. The whole run takes about 8 s at 4, 17 s at 1.
PARALLELISM = 4
#: Upper bound for the whole run, generous for slow CI machines.
TIMEOUT = 240


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


async def test_autobahn_conformance(nursery: trio.Nursery, tmp_path: Path) -> None:
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    outdir = tmp_path / "reports"
    excluded = [arg for pattern in EXCLUDED for arg in ("-x", pattern)]
    command = [
        kosoku_command(),
        f"ws://127.0.0.1:{port}",
        *excluded,
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
    assert len(results) == EXPECTED_CASES, sorted(results)
    assert not any(case.startswith(("12.", "13.")) for case in results)
    assert done.returncode == 0, output
    counts = Counter(entry["behavior"] for entry in results.values())
    print(f"Autobahn: {dict(counts)} in {len(results)} cases")
    app.shutdown()
