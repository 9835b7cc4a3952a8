"""Sampling profiles of the wsroute server under load, summarised for optimisation.

The server runs under ``py-spy record --nonblocking --format raw`` (a child of
py-spy: attaching to a running pid does not work on every kernel), pinned to the
server CPU like in the measured runs. The raw output has one line per distinct stack,
``frame;frame;...;frame COUNT``, each frame ``function (path:line)``; idle time
(waiting in epoll) is not sampled, so shares are of the server's busy time. The
profile covers the server's whole life: start-up imports are set aside, while the
scenario's connection set-up (handshakes) is included.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
_PACKAGES = (
    "wsroute",
    "trio_websocket",
    "wsproto",
    "trio",
    "h11",
    "cattrs",
    "attrs",
    "attr",
    "orjson",
    "outcome",
)


_IMPORT = "<frozen importlib._bootstrap"


def py_spy_command(py_spy: str, output: Path, rate: int = 250) -> list[str]:
    return [
        py_spy,
        "record",
        "--nonblocking",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(output),
        "--",
    ]


def _parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _function(frame: str) -> str:
    """``func (path)`` without the line number, the path shortened to its package."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['func']} ({_short(match['path'])})"


def _short(path: str) -> str:
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    for i, part in enumerate(parts):
        if part in _PACKAGES:
            return "/".join(parts[i:])
    return "/".join(parts[-2:])


def _package(frame: str) -> str:
    match = _FRAME.match(frame)
    path = _short(match["path"]) if match else frame
    head = path.split("/")[0]
    if head in _PACKAGES:
        return head
    if path.startswith("<"):
        return "interpreter"
    return "stdlib/other"


def summarise(raw: Path, top: int = 25) -> str:
    """Self time by function and package, and inclusive time by function, as text."""
    stacks = _parse(raw.read_text(errors="replace").splitlines())
    # Start-up (importing modules) is not what the scenario measures: set it aside.
    startup = sum(count for frames, count in stacks if any(_IMPORT in f for f in frames))
    stacks = [(frames, count) for frames, count in stacks if not any(_IMPORT in f for f in frames)]
    total = sum(count for _, count in stacks)
    if total == 0:
        return f"{raw.name}: no samples\n"
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        self_time[_function(frames[-1])] += count
        packages[_package(frames[-1])] += count
        for name in {_function(frame) for frame in frames}:
            inclusive[name] += count

    def block(title: str, counter: Counter[str], limit: int) -> list[str]:
        lines = [title]
        for name, count in counter.most_common(limit):
            lines.append(f"  {100 * count / total:5.1f}%  {name}")
        return lines

    out = [f"{raw.name}: {total} samples of busy server time ({startup} more while importing)"]
    out += block("self time by package:", packages, len(packages))
    out += block(f"self time, top {top} functions:", self_time, top)
    # Leave out the roots every stack shares (the CLI, trio's run loop).
    inclusive = Counter({k: v for k, v in inclusive.items() if v < 0.9 * total})
    out += block(f"inclusive time, top {top} functions (below the run loop):", inclusive, top)
    return "\n".join(out) + "\n"
