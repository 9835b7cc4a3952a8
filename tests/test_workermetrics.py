"""One ``/metrics`` for all the workers (``wsroute._server.workermetrics``): the
snapshots in a real directory, read and retired as the workers and the supervisor do,
and ``wsroute run --workers 2`` with a real Redis, scraped through the shared port
and parsed with prometheus-client's parser."""

from __future__ import annotations

import logging
import os
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from wsroute import App, Metrics
from wsroute._metrics import Counter, Gauge, Histogram
from wsroute._metrics_merge import decode, encode, take
from wsroute._server.workermetrics import (
    MERGE_ERRORS,
    RETIRED,
    WorkerMetrics,
    read_others,
    retire,
    write_atomically,
)

from .cliproc import StartServer, child_env, start
from .rawws import http_exchange
from .redisproc import RedisServer, redis_server
from .test_supervisor import APP, clients_on_workers, run_workers
from .wsclient import connect

__all__ = ["redis_server", "start"]  # fixtures, imported to be found

TIMEOUT = 10.0

Samples = dict[str, float]


def parse(text: str) -> Samples:
    """Every sample of a page, keyed ``name{label="value",...}`` (labels sorted)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def worker_metrics(opened: int = 0, open: int = 0, latency: float | None = None) -> Metrics:
    """Figures such as a worker has: a counter, a gauge, a histogram."""
    metrics = Metrics()
    Counter(metrics, "app_opened_total", "Opened.").labels().value = opened
    Gauge(metrics, "app_open", "Open now.").labels().value = open
    histogram = Histogram(metrics, "app_seconds", "Time.", ("type",), buckets=(0.1, 1.0))
    if latency is not None:
        histogram.labels("echo").observe(latency)
    return metrics


async def test_a_scrape_adds_the_other_workers_and_the_retired_ones(tmp_path: Path) -> None:
    one = WorkerMetrics(str(tmp_path), worker_metrics(2, 2, 0.05), "worker-1-a.json")
    two = WorkerMetrics(str(tmp_path), worker_metrics(3, 1, 0.5), "worker-2-b.json")
    await two.write()
    samples = parse(await one.page())
    assert samples["app_opened_total"] == 5
    assert samples["app_open"] == 3
    assert samples['app_seconds_bucket{le="0.1",type="echo"}'] == 1
    assert samples['app_seconds_bucket{le="1.0",type="echo"}'] == 2
    assert samples['app_seconds_count{type="echo"}'] == 2
    assert samples["wsroute_workers"] == 2
    assert samples[MERGE_ERRORS] == 0
    # Worker 2 exits: its counters and histogram stay, its gauge goes.
    retire(str(tmp_path), 2)
    assert sorted(os.listdir(tmp_path)) == [RETIRED, "worker-1-a.json"]
    samples = parse(await one.page())
    assert samples["app_opened_total"] == 5
    assert samples["app_open"] == 2
    assert samples['app_seconds_count{type="echo"}'] == 2
    assert samples["wsroute_workers"] == 1
    # So does worker 1 later: retired.json adds up both.
    retire(str(tmp_path), 1)
    retired, folded = decode((tmp_path / RETIRED).read_bytes())
    assert folded == ["worker-2-b.json", "worker-1-a.json"]
    assert retired["app_opened_total"].samples == {(): 5}
    assert "app_open" not in retired


async def test_what_a_scrape_shows_of_its_worker_is_in_its_file_first(tmp_path: Path) -> None:
    metrics = Metrics()
    opened = Counter(metrics, "app_opened_total", "Opened.").labels()
    one = WorkerMetrics(str(tmp_path), metrics, "worker-1-a.json")
    await one.write()
    opened.value = 7  # counted after the last periodic write
    assert parse(await one.page())["app_opened_total"] == 7
    # Killed now, it is retired with at least what it showed: no total goes down.
    retire(str(tmp_path), 1)
    assert decode((tmp_path / RETIRED).read_bytes())[0]["app_opened_total"].samples == {(): 7}


async def test_a_worker_file_also_in_retired_json_counts_once(tmp_path: Path) -> None:
    """The supervisor writes retired.json before it deletes the worker's file: a
    scrape in between must not count that worker twice."""
    two = take(worker_metrics(3))
    write_atomically(str(tmp_path), "worker-2-b.json", encode(two))
    write_atomically(str(tmp_path), RETIRED, encode(two, ["worker-2-b.json"]))
    others = read_others(str(tmp_path), "worker-1-a.json")
    assert others.live == [] and others.errors == []
    assert others.retired["app_opened_total"].samples == {(): 3}


async def test_a_corrupt_file_is_left_out_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = WorkerMetrics(str(tmp_path), worker_metrics(2), "worker-1-a.json")
    (tmp_path / "worker-2-b.json").write_bytes(b'{"version": 1, "families": [')
    write_atomically(str(tmp_path), "worker-3-c.json", encode(take(worker_metrics(4))))
    with caplog.at_level(logging.WARNING, "wsroute"):
        first = parse(await one.page())
        second = parse(await one.page())
    assert first["app_opened_total"] == second["app_opened_total"] == 6
    assert first[MERGE_ERRORS] == 1
    assert second[MERGE_ERRORS] == 2  # counted at each scrape
    warnings = [r.getMessage() for r in caplog.records if "worker-2-b.json" in r.getMessage()]
    assert len(warnings) == 1, warnings
    # The supervisor cannot keep it either: the loss is counted in retired.json.
    with caplog.at_level(logging.WARNING, "wsroute"):
        retire(str(tmp_path), 2)
    assert "the metrics of worker pid 2 are lost" in caplog.text
    assert parse(await one.page())[MERGE_ERRORS] == 2 + 1


async def test_a_metric_of_another_type_in_another_worker_is_left_out(tmp_path: Path) -> None:
    one = WorkerMetrics(str(tmp_path), worker_metrics(2), "worker-1-a.json")
    other = Metrics()
    Gauge(other, "app_opened_total", "Not a counter here.").labels().value = 100
    Counter(other, "app_extra_total", "Only here.", ("kind",)).labels("x").value = 1
    write_atomically(str(tmp_path), "worker-2-b.json", encode(take(other)))
    samples = parse(await one.page())
    assert samples["app_opened_total"] == 2
    assert samples['app_extra_total{kind="x"}'] == 1  # a family one worker lacks
    assert samples[MERGE_ERRORS] == 1


async def test_a_snapshot_that_cannot_be_written_is_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "gone"
    one = WorkerMetrics(str(gone), worker_metrics(2), "worker-1-a.json")
    with caplog.at_level(logging.WARNING, "wsroute"):
        await one.write()
        samples = parse(await one.page())  # its own figures still
        again = parse(await one.page())
    assert samples["app_opened_total"] == again["app_opened_total"] == 2
    # A page shows the failures before its own write.
    assert samples["wsroute_metrics_write_errors_total"] == 1
    assert again["wsroute_metrics_write_errors_total"] == 2
    assert again[MERGE_ERRORS] == 2  # the directory is gone
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


def test_a_corrupt_retired_json_starts_again_from_the_exited_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / RETIRED).write_bytes(b"not json")
    write_atomically(str(tmp_path), "worker-2-b.json", encode(take(worker_metrics(3))))
    with caplog.at_level(logging.ERROR, "wsroute"):
        retire(str(tmp_path), 2)
    assert "retired.json" in caplog.text and "start again from 0" in caplog.text
    retired, folded = decode((tmp_path / RETIRED).read_bytes())
    assert retired["app_opened_total"].samples == {(): 3} and folded == ["worker-2-b.json"]


async def test_a_serving_worker_writes_its_snapshot_and_a_last_one_when_drained(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    app = App()

    @app.direct("echo")
    async def echo(text: str) -> str:
        return text

    write_atomically(str(tmp_path), "worker-2-b.json", encode(take(worker_metrics(3))))
    done = trio.Event()

    async def serve(task_status: trio.TaskStatus[int]) -> None:
        await app._serve("127.0.0.1", 0, metrics_dir=str(tmp_path), task_status=task_status)
        done.set()

    port = await nursery.start(serve)
    (mine,) = [p for p in tmp_path.glob(f"worker-{os.getpid()}-*.json")]
    async with connect(port) as client:
        assert (await client.request("echo", "hi"))["data"] == "hi"
        samples = await scrape(port)
        assert samples[OPEN] == 1 and samples["wsroute_workers"] == 2
        assert samples["app_opened_total"] == 3  # the other worker's
        app.shutdown()
        assert (await client.wait_closed())[0] == 1001
    with trio.fail_after(TIMEOUT):
        await done.wait()
    last = decode(mine.read_bytes())[0]
    assert last[OPENED].samples == {(): 1} and last[OPEN].samples == {(): 0}
    assert last["wsroute_messages_in_total"].samples[("echo",)] == 1


async def test_a_single_process_answers_its_own_figures_alone(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    app = App()
    port = await nursery.start(app.serve, "127.0.0.1", 0)
    samples = await scrape(port)
    assert "wsroute_workers" not in samples and MERGE_ERRORS not in samples


# -- wsroute run --workers, real processes ---------------------------------------------


async def scrape(port: int) -> Samples:
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = await http_exchange(port, request)
    assert answer.status == 200, answer
    return parse(answer.body.decode())


OPENED = "wsroute_connections_opened_total"
OPEN = "wsroute_connections_open"
PIDS = 'wsroute_messages_in_total{type="pid"}'


async def scrapes_until(port: int, expected: Samples, seen: list[Samples]) -> None:
    """Scrape until a page has ``expected``, then 6 more that must all have it;
    every page goes to ``seen``."""
    with trio.fail_after(TIMEOUT):
        while True:
            seen.append(await scrape(port))
            if all(seen[-1][name] == value for name, value in expected.items()):
                break
            await trio.sleep(0.1)
    for _ in range(6):  # whichever worker answers
        seen.append(await scrape(port))
        assert {name: seen[-1][name] for name in expected} == expected


async def test_workers_answer_the_whole_servers_figures_through_a_restart(
    start: StartServer, tmp_path: Path, redis_server: RedisServer
) -> None:
    app_dir = tmp_path / "project"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = child_env(TMPDIR=str(temp))
    server, port, _ = await run_workers(
        start, app_dir, 2, "--broker", redis_server.url, "--log-level", "info", env=env
    )
    assert len(list(temp.glob("wsroute-metrics-*"))) == 1
    seen: list[Samples] = []
    async with AsyncExitStack() as stack:
        by_pid = await clients_on_workers(stack, port, 10)
        await scrapes_until(port, {OPENED: 10, OPEN: 10, PIDS: 10, "wsroute_workers": 2}, seen)
        victim = max(by_pid, key=lambda pid: len(by_pid[pid]))
        os.kill(victim, signal.SIGKILL)
        for client in by_pid.pop(victim):
            assert (await client.wait_closed())[0] == 1006
        await server.wait_for(r"worker \d+ \(pid \d+\) is serving again")
        left = sum(map(len, by_pid.values()))
        expected = {OPENED: 10, OPEN: left, PIDS: 10, "wsroute_workers": 2}
        await scrapes_until(port, expected, seen)
        # Counters never went down, whichever worker answered, dead or replaced.
        for name in (OPENED, PIDS):
            values = [page[name] for page in seen]
            assert values == sorted(values), (name, values)
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0
    assert list(temp.glob("wsroute-metrics-*")) == []  # removed at the end
    problems = [line for line in server.lines if "metrics" in line and "INFO" not in line]
    assert problems == [], server.stderr


async def test_workers_share_nothing_with_metrics_off(
    start: StartServer, tmp_path: Path, redis_server: RedisServer
) -> None:
    app_dir = tmp_path / "project"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP)
    temp = tmp_path / "temp"
    temp.mkdir()
    server, port, _ = await run_workers(
        start,
        app_dir,
        2,
        "--broker",
        redis_server.url,
        "--metrics-path",
        "off",
        env=child_env(TMPDIR=str(temp)),
    )
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert (await http_exchange(port, request)).status == 426
    assert list(temp.iterdir()) == []
    server.signal(signal.SIGTERM)
    assert await server.exit_code() == 0
