"""Metrics of several processes as plain data: a snapshot, its JSON form, and a sum.

The workers of ``wsroute run --workers N`` each count in their own ``Metrics``. So that
a scrape answers the figures of the whole server, each worker writes a snapshot of its
own (``take``, ``encode``), and the worker that answers a scrape adds the others'
(``decode``, ``add``) to its own live figures and writes the sum in the text format
(``build``).

How figures add up:

- counters and histograms: over every snapshot, those of workers that have exited
  included, so that no total goes down when a worker is replaced (Prometheus would
  read a drop as a reset);
- gauges: over the workers alive only (``add(..., gauges=False)`` leaves them out).

Families are matched by name and children by label values; a family or child that
only some snapshots have is taken as it is (a route's children are made on first use).
A family whose type, label names or buckets differ from the one in the sum cannot be
added: ``add`` leaves it out and names it, for the caller to report.

Pure: no trio, no I/O.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ._metrics import Counter, Gauge, Histogram, HistogramValue, Metrics, families

#: The snapshot format's version; a snapshot of another version is refused.
VERSION: Final = 1

_KINDS: Final = ("counter", "gauge", "histogram")

#: A histogram child: its count per bucket (not cumulative; the last is +Inf), its sum.
HistogramSample = tuple[tuple[int, ...], float]
Sample = float | HistogramSample


class Series:
    """One family as plain data."""

    __slots__ = ("bounds", "help", "kind", "labelnames", "samples")

    def __init__(
        self, kind: str, help: str, labelnames: tuple[str, ...], bounds: tuple[float, ...] = ()
    ) -> None:
        self.kind = kind
        self.help = help
        self.labelnames = labelnames
        self.bounds = bounds  # a histogram's upper bounds, without +Inf
        #: By label values, in the order first seen.
        self.samples: dict[tuple[str, ...], Sample] = {}

    def copy(self) -> Series:
        series = Series(self.kind, self.help, self.labelnames, self.bounds)
        series.samples = dict(self.samples)  # samples are immutable
        return series

    def matches(self, other: Series) -> bool:
        """Whether ``other`` can be added to this one."""
        return (self.kind, self.labelnames, self.bounds) == (
            other.kind,
            other.labelnames,
            other.bounds,
        )


#: Families by name, in order.
Snapshot = dict[str, Series]


def take(*registries: Metrics) -> Snapshot:
    """The figures of ``registries`` now, as plain data (a copy)."""
    snapshot: Snapshot = {}
    for registry in registries:
        for family in families(registry):
            bounds = family.bounds if isinstance(family, Histogram) else ()
            series = Series(family.kind, family.help, family.labelnames, bounds)
            for values, child in family.children():
                if isinstance(child, HistogramValue):
                    series.samples[values] = (tuple(child.counts), child.sum)
                else:
                    series.samples[values] = child.read()
            snapshot[family.name] = series
    return snapshot


def add(total: Snapshot, other: Snapshot, *, gauges: bool = True) -> list[str]:
    """Add ``other`` into ``total`` (``other`` is not changed).

    Args:
        gauges: whether ``other``'s gauges count: only a live worker's do.

    Returns:
        The names of ``other``'s families left out: their type, label names or
        buckets differ from those of the family of that name in ``total``.
    """
    conflicts = []
    for name, series in other.items():
        if series.kind == "gauge" and not gauges:
            continue
        mine = total.get(name)
        if mine is None:
            total[name] = series.copy()
        elif not mine.matches(series):
            conflicts.append(name)
        else:
            for values, sample in series.samples.items():
                have = mine.samples.get(values)
                mine.samples[values] = sample if have is None else _plus(have, sample)
    return conflicts


def _plus(a: Sample, b: Sample) -> Sample:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return tuple(x + y for x, y in zip(a[0], b[0], strict=True)), a[1] + b[1]
    assert not isinstance(a, tuple) and not isinstance(b, tuple)  # matches() said so
    return a + b


def build(snapshot: Snapshot) -> Metrics:
    """A ``Metrics`` holding ``snapshot``'s figures, to read or expose."""
    metrics = Metrics()
    for name, series in snapshot.items():
        if series.kind == "histogram":
            histogram = Histogram(metrics, name, series.help, series.labelnames, series.bounds)
            for values, sample in series.samples.items():
                assert isinstance(sample, tuple)
                child = histogram.labels(*values)
                child.counts = list(sample[0])
                child.sum = sample[1]
        else:
            kind = Counter if series.kind == "counter" else Gauge
            family = kind(metrics, name, series.help, series.labelnames)
            for values, sample in series.samples.items():
                assert not isinstance(sample, tuple)
                family.labels(*values).value = sample
    return metrics


def encode(snapshot: Snapshot, folded: list[str] | None = None) -> bytes:
    """``snapshot`` as JSON; ``folded`` names the files already added into it (the
    supervisor's record of exited workers)."""
    families = []
    for name, series in snapshot.items():
        family: dict[str, Any] = {
            "name": name,
            "type": series.kind,
            "help": series.help,
            "labels": list(series.labelnames),
        }
        if series.kind == "histogram":
            family["buckets"] = list(series.bounds)
            family["samples"] = [
                [list(values), list(sample[0]), sample[1]]  # type: ignore[index]
                for values, sample in series.samples.items()
            ]
        else:
            family["samples"] = [[list(values), value] for values, value in series.samples.items()]
        families.append(family)
    document = {"version": VERSION, "folded": folded or [], "families": families}
    return json.dumps(document, separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[Snapshot, list[str]]:
    """A snapshot and its ``folded`` names from ``encode``'s JSON, checked throughout.

    Raises:
        ValueError: not such a snapshot (not JSON, another version, a field missing
            or of the wrong type, an invalid name or bucket list); the message says
            what.
    """
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError(f"not a snapshot of version {VERSION}")
    folded = _list(document.get("folded"), "folded")
    if not all(isinstance(name, str) for name in folded):
        raise ValueError("folded: not a list of file names")
    check = Metrics()  # the families' own checks: names, labels, buckets, duplicates
    snapshot: Snapshot = {}
    for family in _list(document.get("families"), "families"):
        if not isinstance(family, dict):
            raise ValueError("a family is not an object")
        name, kind, help = family.get("name"), family.get("type"), family.get("help")
        if not isinstance(name, str) or kind not in _KINDS or not isinstance(help, str):
            raise ValueError(f"family {name!r}: name, type or help missing or invalid")
        labelnames = tuple(_strings(family.get("labels"), f"{name}: labels"))
        if kind == "histogram":
            bounds = [_number(bound, name) for bound in _list(family.get("buckets"), name)]
            histogram = Histogram(check, name, help, labelnames, bounds)
            series = Series(kind, help, labelnames, histogram.bounds)
        else:
            (Counter if kind == "counter" else Gauge)(check, name, help, labelnames)
            series = Series(kind, help, labelnames)
        for sample in _list(family.get("samples"), f"{name}: samples"):
            if not isinstance(sample, list) or len(sample) != (3 if kind == "histogram" else 2):
                raise ValueError(f"{name}: a sample of the wrong shape")
            values = tuple(_strings(sample[0], f"{name}: label values"))
            if len(values) != len(labelnames):
                raise ValueError(f"{name}: {len(values)} label value(s) for {len(labelnames)}")
            if kind == "histogram":
                counts = _list(sample[1], f"{name}: bucket counts")
                if len(counts) != len(series.bounds) + 1 or not all(
                    type(count) is int and count >= 0 for count in counts
                ):
                    raise ValueError(f"{name}: bucket counts do not fit the buckets")
                series.samples[values] = (tuple(counts), _number(sample[2], name))
            else:
                series.samples[values] = _number(sample[1], name)
        snapshot[name] = series
    return snapshot, folded


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what}: not a list")
    return value


def _strings(value: object, what: str) -> list[str]:
    items = _list(value, what)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{what}: not a list of strings")
    return items


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what}: {value!r} is not a number")
    return value
