"""The Prometheus text exposition (``wsroute._metrics``): the lines it writes, its
escaping and histograms, and that prometheus-client's own parser reads it back."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsroute import Metrics
from wsroute._metrics import (
    CONTENT_TYPE,
    Counter,
    Gauge,
    Histogram,
    escape_help,
    escape_label_value,
    format_value,
)


def test_a_counter_with_labels() -> None:
    metrics = Metrics()
    counter = Counter(metrics, "app_requests_total", "Requests handled.", ("type", "code"))
    counter.labels("echo", "200").inc()
    counter.labels("echo", "200").inc(2)
    counter.labels("join", 500).inc()  # a label value is written as text
    assert metrics.expose() == (
        "# HELP app_requests_total Requests handled.\n"
        "# TYPE app_requests_total counter\n"
        'app_requests_total{type="echo",code="200"} 3\n'
        'app_requests_total{type="join",code="500"} 1\n'
    )
    assert metrics.value("app_requests_total", type="join", code="500") == 1
    assert metrics.value("app_requests_total", type="never", code="200") == 0


def test_an_unlabelled_metric_reads_zero_from_the_start() -> None:
    metrics = Metrics()
    Gauge(metrics, "app_open", "Open now.")
    assert metrics.expose().endswith("\napp_open 0\n")


def test_a_gauge_goes_both_ways_or_reads_a_function() -> None:
    metrics = Metrics()
    gauge = Gauge(metrics, "app_level", "Level.", ("pool",))
    gauge.labels("a").inc(3)
    gauge.labels("a").dec()
    gauge.labels("b").set(0.25)
    gauge.labels("c").function = lambda: 7
    assert [metrics.value("app_level", pool=p) for p in "abc"] == [2, 0.25, 7]
    assert 'app_level{pool="c"} 7\n' in metrics.expose()


def test_a_counter_only_goes_up() -> None:
    counter = Counter(Metrics(), "app_total", "x")
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels().inc(-1)


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    metrics = Metrics()
    histogram = Histogram(metrics, "app_seconds", "Time.", ("type",), buckets=(0.1, 0.5, 1))
    child = histogram.labels("echo")
    for value in (0.05, 0.1, 0.3, 0.7, 2.0):  # 0.1 is "less than or equal" to 0.1
        child.observe(value)
    assert metrics.expose() == (
        "# HELP app_seconds Time.\n"
        "# TYPE app_seconds histogram\n"
        'app_seconds_bucket{type="echo",le="0.1"} 2\n'
        'app_seconds_bucket{type="echo",le="0.5"} 3\n'
        'app_seconds_bucket{type="echo",le="1.0"} 4\n'
        'app_seconds_bucket{type="echo",le="+Inf"} 5\n'
        'app_seconds_sum{type="echo"} 3.15\n'
        'app_seconds_count{type="echo"} 5\n'
    )
    assert metrics.value("app_seconds_count", type="echo") == 5
    assert metrics.value("app_seconds_sum", type="echo") == pytest.approx(3.15)
    with pytest.raises(KeyError):
        metrics.value("app_seconds", type="echo")  # a histogram has no one value


@pytest.mark.parametrize("buckets", [(), (1, 0.5), (0.1, 0.1)])
def test_histogram_buckets_must_increase(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets must increase"):
        Histogram(Metrics(), "app_seconds", "x", buckets=buckets)


def test_escaping_per_the_format() -> None:
    assert escape_help("a\\b\nc") == "a\\\\b\\nc"
    assert escape_label_value('say "hi"\\\n') == 'say \\"hi\\"\\\\\\n'
    metrics = Metrics()
    Counter(metrics, "app_total", 'Help with \\ and\na "quote".', ("v",)).labels('a"b\\c\nd').inc()
    text = metrics.expose()
    assert '# HELP app_total Help with \\\\ and\\na "quote".\n' in text
    assert 'app_total{v="a\\"b\\\\c\\nd"} 1\n' in text
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == 'Help with \\ and\na "quote".'
    assert family.samples[0].labels == {"v": 'a"b\\c\nd'}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (2.0, "2"),
        (0.25, "0.25"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (1e300, "1e+300"),
    ],
)
def test_values(value: float, text: str) -> None:
    assert format_value(value) == text
    assert format_value(math.nan) == "NaN"


@pytest.mark.parametrize("name", ["", "1abc", "app-total", "app total", "é"])
def test_metric_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        Counter(Metrics(), name, "x")


@pytest.mark.parametrize("label", ["", "1a", "a-b", "__reserved", "le"])
def test_label_names_are_checked(label: str) -> None:
    with pytest.raises(ValueError, match="invalid label name"):
        Counter(Metrics(), "app_total", "x", (label,))


def test_names_are_unique_and_label_counts_must_match() -> None:
    metrics = Metrics()
    counter = Counter(metrics, "app_total", "x", ("a",))
    with pytest.raises(ValueError, match="exists already"):
        Gauge(metrics, "app_total", "y")
    with pytest.raises(ValueError, match="not 2 value"):
        counter.labels("x", "y")
    with pytest.raises(KeyError):
        metrics.value("app_total")  # its label is missing
    with pytest.raises(KeyError):
        metrics.value("nothing_total")
    assert metrics.names() == ["app_total"]


def test_prometheus_client_reads_every_kind_back() -> None:
    metrics = Metrics()
    Counter(metrics, "app_events_total", "Events.", ("kind",)).labels("a").inc(4)
    Gauge(metrics, "app_open", "Open.").labels().set(2)
    Histogram(metrics, "app_seconds", "Time.", buckets=(1, 2)).labels().observe(1.5)
    families = {f.name: f for f in text_string_to_metric_families(metrics.expose())}
    # The parser names a counter's family without _total.
    assert {name: f.type for name, f in families.items()} == {
        "app_events": "counter",
        "app_open": "gauge",
        "app_seconds": "histogram",
    }
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for s in families["app_seconds"].samples
    }
    assert samples[("app_seconds_bucket", (("le", "1.0"),))] == 0
    assert samples[("app_seconds_bucket", (("le", "2.0"),))] == 1
    assert samples[("app_seconds_bucket", (("le", "+Inf"),))] == 1
    assert samples[("app_seconds_count", ())] == 1
    assert samples[("app_seconds_sum", ())] == 1.5
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
