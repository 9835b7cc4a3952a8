"""Cap processes' CPU with a cgroup each, so that a benchmark can make them the bottleneck.

Each capped process gets its own cgroup with the same CFS bandwidth limit: ``quota``
microseconds of CPU every ``period`` microseconds (a fraction of one core), as if it ran
on a slow core of its own. cgroup v2 (``/sys/fs/cgroup/cgroup.controllers`` exists:
``cpu.max``) or v1 (``/sys/fs/cgroup/cpu``: ``cpu.cfs_quota_us``, ``cpu.cfs_period_us``);
either needs write access (root). The cgroups are removed on exit, always: the
processes still in them are moved back to the cgroup they came from first, since a
cgroup with processes cannot be removed.

The kernel refuses a quota under 1 ms; :func:`period_for` picks a period long enough.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
MIN_QUOTA_US = 1000  # the kernel's lower bound for a CFS quota


class CapError(RuntimeError):
    """No writable cgroup CPU controller here; the message says why."""


@dataclass(frozen=True)
class Throttling:
    """A cgroup's CFS counters: enforcement periods, those in which it ran out of
    quota, and the time it spent throttled (seconds)."""

    periods: int
    throttled: int
    throttled_s: float


@dataclass(frozen=True)
class CapGroup:
    """One capped process and its cgroup."""

    pid: int
    path: Path
    v2: bool

    def throttling(self) -> Throttling:
        stat = dict(
            (key, int(value))
            for key, value in (
                line.split() for line in (self.path / "cpu.stat").read_text().splitlines()
            )
        )
        if self.v2:
            return Throttling(
                stat["nr_periods"], stat["nr_throttled"], stat["throttled_usec"] / 1e6
            )
        return Throttling(stat["nr_periods"], stat["nr_throttled"], stat["throttled_time"] / 1e9)


def period_for(fraction: float, period_us: int) -> int:
    """``period_us``, or the shortest period whose quota for ``fraction`` of a core is
    at least the kernel's minimum."""
    return max(period_us, math.ceil(MIN_QUOTA_US / fraction))


def controller() -> tuple[Path, bool]:
    """Where to make cgroups and whether it is cgroup v2; :class:`CapError` if
    neither hierarchy is writable."""
    if (CGROUP / "cgroup.controllers").exists():
        if "cpu" not in (CGROUP / "cgroup.controllers").read_text().split():
            raise CapError("cgroup v2 without the cpu controller")
        if not os.access(CGROUP / "cgroup.subtree_control", os.W_OK):
            raise CapError(f"{CGROUP}/cgroup.subtree_control is not writable (run as root)")
        return CGROUP, True
    v1 = CGROUP / "cpu"
    if not (v1 / "cpu.cfs_quota_us").exists():
        raise CapError(f"neither cgroup v2 ({CGROUP}/cgroup.controllers) nor v1 ({v1}) found")
    if not os.access(v1, os.W_OK):
        raise CapError(f"{v1} is not writable (run as root)")
    return v1, False


def _home(pid: int, v2: bool, root: Path) -> Path:
    """The cgroup ``pid`` is in now, in the hierarchy of ``root``."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (v2 and controllers == "") or (not v2 and "cpu" in controllers.split(",")):
            return root / path.lstrip("/")
    return root


@contextlib.contextmanager
def capped(pids: list[int], fraction: float, period_us: int) -> Iterator[list[CapGroup]]:
    """Put each of ``pids`` in a cgroup of its own limited to ``fraction`` of one core
    (quota ``fraction * period_us`` every ``period_us``); remove them all on exit.

    Raises:
        CapError: no writable cgroup CPU controller, or the kernel refused the limit.
    """
    root, v2 = controller()
    quota = round(fraction * period_us)
    if quota < MIN_QUOTA_US:
        raise CapError(f"a quota of {quota} us is under the kernel's {MIN_QUOTA_US} us")
    if v2 and "cpu" not in (root / "cgroup.subtree_control").read_text().split():
        (root / "cgroup.subtree_control").write_text("+cpu")
    groups: list[CapGroup] = []
    homes: dict[int, Path] = {}
    try:
        for pid in pids:
            path = root / f"wsroute-bench-{os.getpid()}-{pid}"
            try:
                path.mkdir()
                groups.append(CapGroup(pid, path, v2))
                if v2:
                    (path / "cpu.max").write_text(f"{quota} {period_us}")
                else:
                    (path / "cpu.cfs_period_us").write_text(str(period_us))
                    (path / "cpu.cfs_quota_us").write_text(str(quota))
                homes[pid] = _home(pid, v2, root)
                (path / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                raise CapError(f"cgroup {path} refused: {exc}") from exc
        yield groups
    finally:
        for group in groups:
            _remove(group, homes.get(group.pid, root))


def _remove(group: CapGroup, home: Path) -> None:
    """Move what is left in ``group`` back ``home`` and remove the cgroup; a failure
    is printed (the cgroup would stay), never raised over the benchmark's own error."""
    try:
        for pid in (group.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                (home / "cgroup.procs").write_text(pid)
        group.path.rmdir()
    except OSError as exc:
        print(f"could not remove cgroup {group.path}: {exc}", flush=True)


def process_cpu(pid: int) -> float:
    """CPU seconds ``pid`` has run so far, all its threads, to the nanosecond
    (``/proc/PID/task/*/schedstat``; ``/proc/PID/stat`` counts in 10 ms ticks, too
    coarse for a process allowed a few milliseconds a second). A thread that ended
    meanwhile is left out."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9
