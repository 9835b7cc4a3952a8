"""One ``/metrics`` for all the workers of ``wsroute run --workers N``.

A scrape through the shared port reaches one worker, chosen by the kernel; it answers
the figures of the whole server. The workers share them through a private directory
the supervisor makes (``make_directory``) and passes on::

    wsroute-metrics-XXXX/
    ├── worker-<pid>-<token>.json   a live worker's latest snapshot (one per worker)
    └── retired.json                 the counters and histograms of exited workers

- A worker (``WorkerMetrics``) writes its snapshot every ``WRITE_INTERVAL`` seconds,
  before it answers a scrape, and once more when it has drained. Each write replaces
  the file whole (a temporary file, then ``os.replace``), so a reader never sees half.
- A scrape (``WorkerMetrics.page``) adds this worker's live figures, the other live
  workers' files (gauges included) and ``retired.json`` (``wsroute._metrics_merge``).
  Other workers' figures are up to ``WRITE_INTERVAL`` old.
- When a worker has exited, the supervisor adds its file into ``retired.json`` and
  deletes it (``retire``), so totals never go down when a worker is replaced.

Totals never go down: what a scrape shows of a worker is in that worker's file before
the answer goes out, and files only grow. Between the supervisor's two steps a reader
could count an exited worker twice (its file and ``retired.json``) or not at all; so
``retired.json`` names the files added into it, and a reader lists the workers' files
before it reads ``retired.json``, and skips those named there.

A file that cannot be read or decoded is left out of the scrape, logged once, and
counted (``wsroute_metrics_merge_errors_total``); a snapshot that cannot be written,
likewise (``wsroute_metrics_write_errors_total``). File I/O runs in threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from typing import Final

import trio

from .._metrics import Counter, Metrics
from .._metrics_merge import Series, Snapshot, add, build, decode, encode, take

logger = logging.getLogger("wsroute")

#: Seconds between two snapshots of a worker: how old other workers' figures can be.
WRITE_INTERVAL: Final = 1.0
RETIRED: Final = "retired.json"
#: How many exited workers' file names ``retired.json`` keeps (for readers' races).
FOLDED_KEPT: Final = 64

MERGE_ERRORS: Final = "wsroute_metrics_merge_errors_total"
MERGE_ERRORS_HELP: Final = (
    "Snapshots of workers left out of a scrape or lost when the worker exited"
    " (unreadable, corrupt, or a metric of another type), counted at each such scrape."
)
WORKERS: Final = "wsroute_workers"


def make_directory() -> str | None:
    """A new private directory (mode 0700) for the workers' snapshots, or ``None``
    (logged) when none can be made: each worker then answers its own figures."""
    try:
        return tempfile.mkdtemp(prefix="wsroute-metrics-")
    except OSError as exc:
        logger.error(
            "cannot make a directory for the workers' metrics: %s (each scrape"
            " of /metrics answers one worker's figures)",
            exc,
        )
        return None


def remove_directory(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def write_atomically(directory: str, name: str, data: bytes) -> None:
    """Replace ``directory/name`` with ``data`` whole (blocking)."""
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read(directory: str, name: str) -> bytes:
    with open(os.path.join(directory, name), "rb") as file:
        return file.read()


def _is_worker_file(name: str) -> bool:
    return name.startswith("worker-") and name.endswith(".json")


class Others:
    """What one scrape read of the other workers (``read_others``)."""

    def __init__(self) -> None:
        self.live: list[tuple[str, Snapshot]] = []  # (file, snapshot)
        self.retired: Snapshot = {}
        self.errors: list[tuple[str, str]] = []  # (file, what is wrong)


def read_others(directory: str, own: str) -> Others:
    """The snapshots in ``directory`` but ``own`` (blocking)."""
    others = Others()
    try:
        names = sorted(name for name in os.listdir(directory) if _is_worker_file(name))
    except OSError as exc:
        others.errors.append((directory, str(exc)))
        return others
    live: list[tuple[str, Snapshot]] = []
    for name in names:
        if name == own:
            continue
        try:
            live.append((name, decode(_read(directory, name))[0]))
        except FileNotFoundError:
            continue  # the worker exited and was retired since: retired.json has it
        except (OSError, ValueError) as exc:
            others.errors.append((name, str(exc)))
    folded: list[str] = []
    try:  # after the workers' files: see the module's docstring
        others.retired, folded = decode(_read(directory, RETIRED))
    except FileNotFoundError:
        pass  # no worker has exited yet
    except (OSError, ValueError) as exc:
        others.errors.append((RETIRED, str(exc)))
    others.live = [(name, snapshot) for name, snapshot in live if name not in folded]
    return others


def retire(directory: str, pid: int) -> None:
    """Add the files of the exited worker ``pid`` into ``retired.json`` (counters and
    histograms; its gauges end with it), then delete them.

    Blocking, and to be called as soon as the worker is reaped, before another worker
    starts: its pid could be reused. Never raises: a problem is logged.
    """
    try:
        names = [n for n in os.listdir(directory) if n.startswith(f"worker-{pid}-")]
        if not names:
            return  # it exited before its first snapshot
        try:
            retired, folded = decode(_read(directory, RETIRED))
        except FileNotFoundError:
            retired, folded = {}, []
        except ValueError as exc:
            logger.error(
                "%s in %s is corrupt (%s): the totals of exited workers start again from 0",
                RETIRED,
                directory,
                exc,
            )
            retired, folded = {}, []
        lost = 0
        for name in names:
            try:
                conflicts = add(retired, decode(_read(directory, name))[0], gauges=False)
            except (OSError, ValueError) as exc:
                logger.warning("the metrics of worker pid %d are lost: %s: %s", pid, name, exc)
                lost += 1
                continue
            if conflicts:
                logger.warning(
                    "metrics of worker pid %d left out, their type, labels or buckets changed: %s",
                    pid,
                    ", ".join(conflicts),
                )
                lost += 1
        if lost:
            errors = Series("counter", MERGE_ERRORS_HELP, ())
            errors.samples[()] = lost
            add(retired, {MERGE_ERRORS: errors})
        folded = (folded + names)[-FOLDED_KEPT:]
        write_atomically(directory, RETIRED, encode(retired, folded))
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
    except OSError as exc:
        logger.error("cannot keep the metrics of worker pid %d in %s: %s", pid, directory, exc)


class WorkerMetrics:
    """One worker's side: its snapshot written for the others, and its scrapes.

    Args:
        directory: the supervisor's directory.
        metrics: the app's metrics (``app.metrics``).
        name: this worker's file (by default ``worker-<pid>-<random>.json``).
    """

    def __init__(self, directory: str, metrics: Metrics, name: str | None = None) -> None:
        self.directory = directory
        self.name = name or f"worker-{os.getpid()}-{secrets.token_hex(4)}.json"
        self.metrics = metrics
        #: Counted here, added up over the workers like the app's own.
        self.own = Metrics()
        self.merge_errors = Counter(self.own, MERGE_ERRORS, MERGE_ERRORS_HELP).labels()
        self.write_errors = Counter(
            self.own,
            "wsroute_metrics_write_errors_total",
            "Times a worker could not write its snapshot for the other workers' scrapes.",
        ).labels()
        self._lock = trio.Lock()  # files in the order snapshots were taken
        self._warned: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write the snapshot now and every ``WRITE_INTERVAL`` seconds, until cancelled."""
        await self.write()
        task_status.started()
        while True:
            await trio.sleep(WRITE_INTERVAL)
            await self.write()

    async def write(self) -> None:
        """Write this worker's snapshot (a failure is logged once and counted)."""
        async with self._lock:
            await self._write(take(self.metrics, self.own))

    async def _write(self, snapshot: Snapshot) -> None:
        try:
            data = encode(snapshot)
            await trio.to_thread.run_sync(write_atomically, self.directory, self.name, data)
        except OSError as exc:
            self.write_errors.value += 1
            self._warn_once(
                "write",
                "cannot write this worker's metrics to %s: %s (scrapes"
                " at other workers miss its latest figures)",
                self.directory,
                exc,
            )

    async def page(self) -> str:
        """The whole server's figures, in the text format (``/metrics``)."""
        others = await trio.to_thread.run_sync(read_others, self.directory, self.name)
        async with self._lock:
            # From here to the write, no checkpoint: the figures added up are the ones
            # written, so what this answer shows of this worker is in its file.
            total = take(self.metrics)
            errors = list(others.errors)
            for file, snapshot in [*others.live, (RETIRED, others.retired)]:
                conflicts = add(total, snapshot, gauges=file != RETIRED)
                errors += [(file, f"{name}: another type, labels or buckets") for name in conflicts]
            for where, problem in errors:
                self.merge_errors.value += 1
                self._warn_once(
                    where, "metrics of other workers left out of a scrape: %s: %s", where, problem
                )
            own = take(self.metrics, self.own)
            add(total, take(self.own))
            await self._write(own)
        workers = Series("gauge", "Worker processes serving now, this one included.", ())
        workers.samples[()] = 1 + len(others.live)
        total[WORKERS] = workers
        return await trio.to_thread.run_sync(lambda: build(total).expose())

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)
