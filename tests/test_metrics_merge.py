"""Metrics of several processes as plain data (``wsroute._metrics_merge``): snapshots
taken, encoded and decoded back, added up by the rules of each type, refused when
corrupt, and written out as prometheus-client's parser reads them."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsroute import Metrics
from wsroute._metrics import Counter, Gauge, Histogram
from wsroute._metrics_merge import Series, add, build, decode, encode, take


def worker(
    opened: int, open: int, *latencies: float, closed: dict[str, int] | None = None
) -> Metrics:
    metrics = Metrics()
    Counter(metrics, "app_opened_total", "Opened.").labels().value = opened
    Gauge(metrics, "app_open", "Open now.").labels().value = open
    closes = Counter(metrics, "app_closed_total", "Closed, by code.", ("code",))
    for code, count in (closed or {}).items():
        closes.labels(code).value = count
    histogram = Histogram(metrics, "app_seconds", "Time.", ("type",), buckets=(0.1, 1.0))
    for latency in latencies:
        histogram.labels("echo").observe(latency)
    return metrics


def test_take_copies_every_family_and_child() -> None:
    metrics = worker(2, 1, 0.05, 5.0, closed={"1000": 2})
    snapshot = take(metrics)
    assert list(snapshot) == ["app_opened_total", "app_open", "app_closed_total", "app_seconds"]
    assert snapshot["app_closed_total"].samples == {("1000",): 2}
    assert snapshot["app_seconds"].bounds == (0.1, 1.0)
    assert snapshot["app_seconds"].samples == {("echo",): ((1, 0, 1), 5.05)}
    Counter(metrics, "app_later_total", "Made after.").labels().value = 1
    assert "app_later_total" not in snapshot  # a copy


def test_encode_and_decode_round_trip() -> None:
    metrics = worker(2, 1, 0.05, closed={"1000": 2, "4xxx": 1})
    Gauge(metrics, "app_odd", "Not a number.", ("x",)).labels('a"b\n').value = math.inf
    snapshot, folded = decode(encode(take(metrics), ["worker-1-a.json"]))
    assert folded == ["worker-1-a.json"]
    assert build(snapshot).expose() == metrics.expose()


def test_counters_and_histograms_add_up_and_gauges_of_live_workers_only() -> None:
    total = take(worker(2, 2, 0.05, closed={"1000": 1}))
    assert add(total, take(worker(3, 1, 0.5, closed={"1000": 1, "1001": 2}))) == []
    assert add(total, take(worker(10, 7, 5.0)), gauges=False) == []  # an exited worker
    assert total["app_opened_total"].samples == {(): 15}
    assert total["app_open"].samples == {(): 3}
    # Children by label values; one only some have is taken as it is, after the others.
    assert total["app_closed_total"].samples == {("1000",): 2, ("1001",): 2}
    assert total["app_seconds"].samples == {("echo",): ((1, 1, 1), 5.55)}
    families = {f.name: f for f in text_string_to_metric_families(build(total).expose())}
    buckets = {
        s.labels["le"]: s.value
        for s in families["app_seconds"].samples
        if s.name.endswith("bucket")
    }
    assert buckets == {"0.1": 1, "1.0": 2, "+Inf": 3}


def test_add_takes_a_family_only_the_other_has_and_leaves_the_other_unchanged() -> None:
    total = take(worker(1, 1))
    other = Metrics()
    Counter(other, "app_extra_total", "Only here.", ("kind",)).labels("x").value = 4
    other_snapshot = take(other)
    add(total, other_snapshot)
    add(total, other_snapshot)
    assert list(total)[-1] == "app_extra_total"
    assert total["app_extra_total"].samples == {("x",): 8}
    assert other_snapshot["app_extra_total"].samples == {("x",): 4}


@pytest.mark.parametrize(
    "make",
    [
        lambda m: Gauge(m, "app_opened_total", "A gauge here."),
        lambda m: Counter(m, "app_opened_total", "Other labels.", ("code",)),
        lambda m: Histogram(m, "app_seconds", "Other buckets.", ("type",), buckets=(0.5,)),
    ],
    ids=["type", "labels", "buckets"],
)
def test_a_family_that_differs_is_left_out_and_named(make: object) -> None:
    total = take(worker(1, 1, 0.05))
    before = encode(total)
    other = Metrics()
    make(other)  # type: ignore[operator]
    conflicts = add(total, take(other))
    assert len(conflicts) == 1 and conflicts[0] in ("app_opened_total", "app_seconds")
    assert encode(total) == before


def test_a_retired_sum_keeps_no_gauge() -> None:
    retired: dict[str, Series] = {}
    add(retired, take(worker(3, 2, 0.05)), gauges=False)
    assert "app_open" not in retired and retired["app_opened_total"].samples == {(): 3}


def good() -> dict[str, object]:
    return json.loads(encode(take(worker(1, 1, 0.05, closed={"1000": 1}))))


def corrupt(change: str) -> bytes:
    document = good()
    families = document["families"]
    assert isinstance(families, list)
    counter, _, closed, histogram = families
    changes = {
        "version": lambda: document.update(version=2),
        "no families": lambda: document.pop("families"),
        "folded": lambda: document.update(folded=[1]),
        "type": lambda: counter.update(type="summary"),
        "name": lambda: counter.update(name="app opened"),
        "label name": lambda: closed.update(labels=["le"]),
        "duplicate": lambda: families.append(counter),
        "value": lambda: counter.update(samples=[[[], "1"]]),
        "bool": lambda: counter.update(samples=[[[], True]]),
        "label values": lambda: closed.update(samples=[[["1000", "x"], 1]]),
        "shape": lambda: closed.update(samples=[["1000", 1]]),
        "buckets": lambda: histogram.update(buckets=[1.0, 0.1]),
        "bucket counts": lambda: histogram.update(samples=[[["echo"], [1, 0], 0.05]]),
        "negative count": lambda: histogram.update(samples=[[["echo"], [1, -1, 0], 0.05]]),
    }
    changes[change]()
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "change",
    [
        "version",
        "no families",
        "folded",
        "type",
        "name",
        "label name",
        "duplicate",
        "value",
        "bool",
        "label values",
        "shape",
        "buckets",
        "bucket counts",
        "negative count",
    ],
)
def test_a_corrupt_snapshot_is_refused(change: str) -> None:
    decode(json.dumps(good()).encode())  # unchanged, it is read
    with pytest.raises(ValueError):
        decode(corrupt(change))


@pytest.mark.parametrize("data", [b"", b"{", b"\xff", b"[]", b"null", b'{"version": 1}'])
def test_what_is_not_a_snapshot_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)
