"""Reading a running process's instruction count from callgrind, for the benchmarks
that count instructions instead of timing (``rpc_cost.py``, ``churn_cost.py``,
``history_instructions.py``): a figure the VM's drifting speed cannot move."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path


def dump_total(out: Path, pid: int, dumps_before: int) -> int:
    """Dump the counters of callgrind process ``pid`` (started with
    ``--callgrind-out-file=out``); return the dump's total: what ran since the previous
    dump (a dump zeroes the counters). ``dumps_before``: how many dumps it made."""
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        files = sorted(out.parent.glob(out.name + ".*"))
        if len(files) > dumps_before:
            text = files[-1].read_text(errors="replace")
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            if found:
                return int(found.group(1))
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")
