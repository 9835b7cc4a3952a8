"""Counters, gauges and histograms, written in Prometheus's text format (0.0.4).

No dependency: the format is small, and the counting must be cheap enough for the
path of every message. A family (``Counter``, ``Gauge``, ``Histogram``) has a name,
a help text and fixed label names; ``labels(...)`` gives the child for one set of
label values, made once. Callers look children up when they are set up (per route,
per close code) and keep them, so that counting is an attribute increment.

The exposition follows https://prometheus.io/docs/instrumenting/exposition_formats/:
``# HELP`` (``\\`` and newlines escaped), ``# TYPE``, then one line per sample;
label values escape ``\\``, ``"`` and newlines; a histogram's buckets are
cumulative, with ``le="+Inf"`` equal to its ``_count``. Families keep the order they
were made in, children the order they were first used.

Pure: no trio, no I/O. Not thread-safe: one event loop counts.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Generic, TypeVar

#: The format's content type, for the ``/metrics`` answer.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: Seconds: from half a millisecond (a handler that does nothing) to ten seconds.
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def format_value(value: float) -> str:
    """A sample value as the format writes it: integers without a point, ``+Inf``,
    ``-Inf``, ``NaN``."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Value:
    __slots__ = ("function", "value")

    def __init__(self) -> None:
        self.value: float = 0
        #: When set, the value is this function's answer at each read (a count kept
        #: elsewhere, such as ``app.coalesce_stats``).
        self.function: Callable[[], float] | None = None

    def read(self) -> float:
        return self.function() if self.function is not None else self.value


class CounterValue(_Value):
    """One counter: it only goes up. Hot paths add to ``value`` directly."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up, not by {amount!r}")
        self.value += amount


class GaugeValue(_Value):
    """One gauge: a value that goes up and down."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class HistogramValue:
    """One histogram: how many observations fell at or below each bound, their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; last: +Inf
        self.sum: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


Child = TypeVar("Child", CounterValue, GaugeValue, HistogramValue)


class Family(Generic[Child]):
    """Samples of one metric name, a child per set of label values."""

    kind: str = ""

    def __init__(
        self, registry: Metrics, name: str, help: str, labelnames: Sequence[str] = ()
    ) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}: [a-zA-Z_:][a-zA-Z0-9_:]*")
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(
                    f"invalid label name {label!r} for {name}: [a-zA-Z_][a-zA-Z0-9_]*, not"
                    " starting with __, not le"
                )
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        registry._add(self)
        if not self.labelnames:
            self.labels()  # one sample, 0 from the start

    def _new(self) -> Child:
        raise NotImplementedError

    def labels(self, *values: str) -> Child:
        """The child for these label values (in the order of ``labelnames``), made on
        first use."""
        key = tuple(map(str, values))
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(
                    f"{self.name} has labels {self.labelnames}, not {len(key)} value(s)"
                )
            child = self._children[key] = self._new()
        return child

    def children(self) -> Iterator[tuple[tuple[str, ...], Child]]:
        return iter(list(self._children.items()))

    def _label_text(self, values: tuple[str, ...], extra: str = "") -> str:
        pairs = [
            f'{name}="{escape_label_value(value)}"'
            for name, value in zip(self.labelnames, values, strict=True)
        ]
        if extra:
            pairs.append(extra)
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def samples(self) -> Iterator[tuple[str, str, float]]:
        """``(sample name, label text, value)`` for each sample."""
        raise NotImplementedError

    def expose(self) -> str:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{name}{labels} {format_value(value)}" for name, labels, value in self.samples()]
        return "\n".join(lines) + "\n"


class Counter(Family[CounterValue]):
    kind = "counter"

    def _new(self) -> CounterValue:
        return CounterValue()

    def samples(self) -> Iterator[tuple[str, str, float]]:
        for values, child in self.children():
            yield self.name, self._label_text(values), child.read()


class Gauge(Family[GaugeValue]):
    kind = "gauge"

    def _new(self) -> GaugeValue:
        return GaugeValue()

    def samples(self) -> Iterator[tuple[str, str, float]]:
        for values, child in self.children():
            yield self.name, self._label_text(values), child.read()


class Histogram(Family[HistogramValue]):
    kind = "histogram"

    def __init__(
        self,
        registry: Metrics,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        bounds = tuple(float(bound) for bound in buckets if not math.isinf(bound))
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram {name}: buckets must increase, not {buckets!r}")
        self.bounds = bounds
        super().__init__(registry, name, help, labelnames)

    def _new(self) -> HistogramValue:
        return HistogramValue(self.bounds)

    def samples(self) -> Iterator[tuple[str, str, float]]:
        for values, child in self.children():
            running = 0
            for bound, count in zip((*self.bounds, math.inf), child.counts, strict=True):
                running += count
                le = f'le="{format_value(bound) if math.isinf(bound) else repr(bound)}"'
                yield f"{self.name}_bucket", self._label_text(values, le), running
            yield f"{self.name}_sum", self._label_text(values), child.sum
            yield f"{self.name}_count", self._label_text(values), running


_AnyFamily = Family[CounterValue] | Family[GaugeValue] | Family[HistogramValue]


class Metrics:
    """The metrics of one app, as ``app.metrics``: what ``/metrics`` serves.

    Read a value in-process with :meth:`value`; :meth:`expose` gives the whole
    scrape in the Prometheus text format. docs/metrics.md lists every metric.
    """

    __slots__ = ("_families",)

    def __init__(self) -> None:
        self._families: dict[str, _AnyFamily] = {}

    def _add(self, family: Family[Child]) -> None:
        if family.name in self._families:
            raise ValueError(f"a metric named {family.name!r} exists already")
        self._families[family.name] = family

    def names(self) -> list[str]:
        """The name of every metric family, in the order they were made."""
        return list(self._families)

    def value(self, name: str, **labels: str) -> float:
        """The current value of one sample: ``value("wsroute_messages_in_total",
        type="echo")``; for a histogram, its ``<name>_count`` or ``<name>_sum``. A
        sample never counted reads 0.

        Raises:
            KeyError: no metric has this name, or it has other labels.
        """
        base = name
        part = ""
        if name not in self._families:
            for suffix in ("_count", "_sum"):
                if name.endswith(suffix) and name.removesuffix(suffix) in self._families:
                    base, part = name.removesuffix(suffix), suffix
        family = self._families.get(base)
        if family is None or (isinstance(family, Histogram) and not part):
            raise KeyError(f"no metric sample named {name!r}")
        if set(labels) != set(family.labelnames):
            raise KeyError(f"{base} has labels {family.labelnames}, not {tuple(labels)}")
        child = family._children.get(tuple(str(labels[label]) for label in family.labelnames))
        if child is None:
            return 0
        if isinstance(child, HistogramValue):
            return child.count if part == "_count" else child.sum
        return child.read()

    def expose(self) -> str:
        """Every metric in the Prometheus text exposition format, version 0.0.4."""
        return "".join(family.expose() for family in families(self))


def families(metrics: Metrics) -> list[_AnyFamily]:
    """Every family of ``metrics``, in the order they were made (for ``_metrics_merge``)."""
    return list(metrics._families.values())
