"""Prerequisites of a benchmark run: tools on PATH, the Node load generator, the venvs.

Each check fails with a :class:`SetupError` that says what is missing and how to get
it. The reference servers live in their own virtualenvs under ``benchmarks/.venvs``
(git-ignored), built from the pinned files in ``benchmarks/requirements`` and rebuilt
whenever a file changes. The Node load generator is installed with ``npm ci`` from
the committed ``package-lock.json``, again only when the lock file changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENVS = HERE / ".venvs"
REQUIREMENTS = HERE / "requirements"
PIP_TIMEOUT = 900
NPM_TIMEOUT = 300
MIN_NODE_MAJOR = 18


class SetupError(Exception):
    """A prerequisite is missing; the message says how to provide it."""


def _run(cmd: list[str], *, cwd: Path, timeout: float, what: str) -> None:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise SetupError(f"{what} did not finish within {timeout:.0f} s: {' '.join(cmd)}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()


def check_tools(client_cpus: Sequence[str] = ("1",)) -> dict[str, str]:
    """Find taskset, node and npm; return their paths.

    CPU 0 (the server's) and the client's CPUs (CPU 1 unless told) are required.
    """
    found = {}
    hints = {
        "taskset": "install util-linux (apt-get install util-linux)",
        "node": f"install Node.js {MIN_NODE_MAJOR} or newer (apt-get install nodejs npm)",
        "npm": "install npm (apt-get install npm)",
    }
    for tool, hint in hints.items():
        path = shutil.which(tool)
        if path is None:
            raise SetupError(f"{tool} not found on PATH: {hint}")
        found[tool] = path
    version = subprocess.run(
        [found["node"], "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE_MAJOR:
        raise SetupError(f"node {version or '?'} is too old: {hints['node']}")
    cpus = os.sched_getaffinity(0)
    wanted = {0, *(int(cpu) for cpu in client_cpus)}
    if not wanted <= cpus:
        raise SetupError(
            f"the benchmark pins the server to CPU 0 and the client to CPU "
            f"{','.join(client_cpus)}, but this process may only use CPUs {sorted(cpus)}"
        )
    return found


def ensure_node_modules(npm: str) -> None:
    """``npm ci`` in benchmarks/ unless node_modules matches package-lock.json."""
    lock = HERE / "package-lock.json"
    stamp = HERE / "node_modules" / ".wsroute-bench-lock"
    digest = _digest(HERE / "package.json", lock)
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("installing the Node load generator (npm ci) ...", flush=True)
    _run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=HERE,
        timeout=NPM_TIMEOUT,
        what="npm ci in benchmarks/ (needs the npm registry)",
    )
    stamp.write_text(digest)


def base_python() -> str:
    """The interpreter the project venv was made from, for the reference venvs."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_venv(name: str) -> Path:
    """Create or refresh ``benchmarks/.venvs/NAME`` from ``requirements/NAME.txt``.

    Returns the venv's ``bin`` directory.
    """
    requirements = REQUIREMENTS / f"{name}.txt"
    venv = VENVS / name
    stamp = venv / ".wsroute-bench-requirements"
    digest = _digest(requirements) + base_python()
    if stamp.exists() and stamp.read_text() == digest:
        return venv / "bin"
    print(f"creating benchmarks/.venvs/{name} ...", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    _run(
        [base_python(), "-m", "venv", str(venv)],
        cwd=HERE,
        timeout=120,
        what=f"creating the {name} virtualenv",
    )
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)],
        cwd=HERE,
        timeout=PIP_TIMEOUT,
        what=f"installing {requirements.name} (needs PyPI)",
    )
    stamp.write_text(digest)
    return venv / "bin"


def check_wsroute() -> Path:
    """The ``wsroute`` command of the project venv this runner is started from."""
    wsroute = Path(sys.executable).parent / "wsroute"
    if not wsroute.exists():
        raise SetupError(
            f"{wsroute} not found: run the benchmarks with the project venv's python "
            "(.venv/bin/python benchmarks/run.py) after `pip install -e .`"
        )
    return wsroute


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (inherited by servers and client)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise SetupError(
            f"the open-file limit is {target} but the idle scenario needs {needed}: raise the "
            f"hard limit (ulimit -Hn {needed}, or limits.conf) or pass smaller --idle sizes"
        )
    return target


def _version_of(python: Path, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, sys\n"
        "for p in sys.argv[1:]:\n"
        "    try: print(p, m.version(p))\n"
        "    except m.PackageNotFoundError: print(p, '-')\n"
    )
    done = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, timeout=60
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def wsroute_commit() -> str:
    """The checked-out commit, ``-dirty`` when tracked files are modified."""
    return commit_of(ROOT)


def commit_of(checkout: Path) -> str:
    """The commit checked out in ``checkout``, ``-dirty`` when tracked files are modified."""
    try:
        git = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--exclude", "*"],
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return git.stdout.strip() or "?"


def describe_environment(venv_bins: dict[str, Path], node: str) -> dict[str, str]:
    """Machine and versions, for the report; ``venv_bins`` by venv name."""
    info: dict[str, str] = {"cpus": str(os.cpu_count())}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line),
            "?",
        )
    except (OSError, subprocess.TimeoutExpired):
        model = "?"
    info["cpu model"] = model
    info["kernel"] = os.uname().release
    info["python"] = sys.version.split()[0]
    info["wsroute commit"] = wsroute_commit()
    packages = ["wsroute", "trio", "trio-websocket", "wsproto", "orjson", "msgpack"]
    ours = _version_of(Path(sys.executable), packages)
    info.update({f"{k} (wsroute venv)": v for k, v in ours.items()})
    wanted = {
        "trio-websocket": ["trio-websocket", "trio", "wsproto"],
        "websockets": ["websockets"],
        "starlette": ["starlette", "uvicorn", "websockets", "uvloop", "httptools"],
        "picows": ["picows", "aiofastnet", "uvloop", "multidict"],
    }
    for name, packages in wanted.items():
        if name in venv_bins:
            found = _version_of(venv_bins[name] / "python", packages)
            info.update({f"{k} ({name} venv)": v for k, v in found.items()})
    info["node"] = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    for package in ("ws", "@msgpack/msgpack"):
        found = HERE / "node_modules" / package / "package.json"
        if found.exists():
            info[f"{package} (npm)"] = json.loads(found.read_text())["version"]
    return info
