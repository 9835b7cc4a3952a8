"""Medians of repeated runs, and the Markdown report the runner prints and saves.

``runs[scenario][server]`` is the list of result dicts of one scenario against one
server (the load generator's JSON line plus what the runner measured). Every figure
shown is the median over those runs. The summary ranks the servers by server CPU
time per operation (÷ picows-uvloop, and wsroute ÷ each); the results table gives
every figure with wsroute ÷ peer.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _procs import ServerSpec
    from _runs import Plan

Runs = Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]

SUBJECT = "wsroute"
BASELINE = "picows-uvloop"  # the ranking's yardstick: the cheapest server per operation
CLIENT_BOUND = 90.0  # % of the client's core above which the client was the bottleneck
NOISY = 15.0  # % of a core taken by other processes above which a run is flagged


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool

    @property
    def title(self) -> str:
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"


_UNITS = {"rpc": "reply", "fanout": "delivery", "churn": "cycle"}
_LATENCY = (Metric("p50_ms", "p50 ms", False), Metric("p99_ms", "p99 ms", False))
_COST = "server_us_per_op"
# TCP bytes (frames with their headers) in the measured window, per operation.
_DOWN, _UP = "down_bytes_per_op", "up_bytes_per_op"
METRICS: dict[str, tuple[Metric, ...]] = {
    "rpc": (
        Metric("replies_per_s", "replies/s", True),
        *_LATENCY,
        Metric(_COST, "server CPU µs/reply", False),
        Metric(_DOWN, "bytes/reply, server → client", False),
        Metric(_UP, "bytes/request, client → server", False),
    ),
    "fanout": (
        Metric("deliveries_per_s", "deliveries/s", True),
        *_LATENCY,
        Metric("lost", "lost", False),
        Metric(_COST, "server CPU µs/delivery", False),
        Metric(_DOWN, "bytes/delivery, server → subscriber", False),
        Metric(_UP, "bytes/broadcast, publisher → server", False),
    ),
    "idle": (
        Metric("kib_per_conn", "KiB/connection", False),
        Metric("baseline_mib", "RSS before, MiB", False),
    ),
    "churn": (
        Metric("cycles_per_s", "cycles/s", True),
        *_LATENCY,
        Metric(_COST, "server CPU µs/cycle", False),
    ),
}


def family(scenario: str) -> str:
    return scenario.split("-")[0]


def median(runs: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    if key.endswith("_per_s") or key == "lost":
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def results_table(runs: Runs, servers: Sequence[str]) -> str:
    peers = [name for name in servers if name != SUBJECT]
    header = ["scenario", "metric", *servers, *(f"{SUBJECT} ÷ {peer}" for peer in peers)]
    rows = [header, ["---"] * len(header)]
    for scenario, by_server in runs.items():
        for metric in METRICS[family(scenario)]:
            values = {name: median(by_server.get(name, ()), metric.key) for name in servers}
            ratios = [
                "-" if metric.key == "lost" else _ratio(values.get(SUBJECT), values[peer])
                for peer in peers
            ]
            cells = [_fmt(values[name], metric.key) for name in servers]
            rows.append([scenario, metric.title, *cells, *ratios])
    return _markdown(rows)


def _client_core(run: Mapping[str, Any]) -> float | None:
    """The client's CPU on its busiest core (several load generators: their sum per CPU)."""
    value = run.get("client_core_cpu", run.get("client_cpu"))
    return None if value is None else float(value)


def _flags(server_runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """**client-bound** and *noisy*, from the median CPU figures of some runs."""
    flags = []
    cores = [c for c in (_client_core(run) for run in server_runs) if c is not None]
    if cores and statistics.median(cores) > CLIENT_BOUND:
        flags.append("**client-bound**")
    other = median(server_runs, "other_cpu")
    if other is not None and other > NOISY:
        flags.append("*noisy*")
    return flags


def cpu_table(runs: Runs, servers: Sequence[str]) -> str:
    """Median CPU of server / client / other processes, as % of one core."""
    rows = [["scenario", *servers], ["---"] * (len(servers) + 1)]
    for scenario, by_server in runs.items():
        if family(scenario) == "idle":
            continue
        cells = []
        for name in servers:
            server_runs = by_server.get(name, ())
            srv, cli, oth = (
                median(server_runs, k) for k in ("server_cpu", "client_cpu", "other_cpu")
            )
            if srv is None or cli is None:
                cells.append("-")
                continue
            cells.append(
                " ".join([f"{srv:.0f} / {cli:.0f} / {oth or 0:.0f}", *_flags(server_runs)])
            )
        rows.append([scenario, *cells])
    return _markdown(rows)


def ranking_table(runs: Runs, servers: Sequence[str]) -> str:
    """Every server in every scenario, cheapest first: server CPU µs per operation.

    Ratios: the server ÷ ``BASELINE`` (how many times picows + uvloop's cost) and
    wsroute ÷ the server; both below 1 mean cheaper than the other side.
    """
    base = BASELINE if BASELINE in servers else None
    subject = SUBJECT if SUBJECT in servers else None
    header = ["scenario", "rank", "server", "server CPU µs/op ↓"]
    header += [f"÷ {base}"] if base else []
    header += [f"{subject} ÷ server"] if subject else []
    header += ["ops/s", "CPU % server / client"]
    rows = [header, ["---"] * len(header)]
    for scenario, by_server in runs.items():
        kind = family(scenario)
        if kind not in _UNITS:
            continue
        costs = {name: median(by_server.get(name, ()), _COST) for name in servers}
        ranked = sorted((cost, name) for name, cost in costs.items() if cost is not None)
        rate_key = METRICS[kind][0].key
        for rank, (cost, name) in enumerate(ranked, 1):
            server_runs = by_server[name]
            srv, cli = median(server_runs, "server_cpu"), median(server_runs, "client_cpu")
            cpu = "-" if srv is None or cli is None else f"{srv:.0f} / {cli:.0f}"
            row = [f"{scenario} (µs/{_UNITS[kind]})", str(rank), name, _fmt(cost, _COST)]
            row += [_ratio(cost, costs[base])] if base else []
            row += [_ratio(costs[subject], cost)] if subject else []
            row += [
                _fmt(median(server_runs, rate_key), rate_key),
                " ".join([cpu, *_flags(server_runs)]),
            ]
            rows.append(row)
    return _markdown(rows) if len(rows) > 2 else "No CPU figures (no rpc, fanout or churn run)."


def overall_table(runs: Runs, servers: Sequence[str]) -> str:
    """Per server: the geometric mean over the scenarios of its cost ÷ ``BASELINE``."""
    if BASELINE not in servers:
        return ""
    rows = [
        ["server", f"geometric mean ÷ {BASELINE} ↓", "scenarios", f"{SUBJECT} ÷ server"],
        ["---"] * 4,
    ]
    means = []
    for name in servers:
        ratios = []
        for by_server in (b for s, b in runs.items() if family(s) in _UNITS):
            ours = median(by_server.get(name, ()), _COST)
            base = median(by_server.get(BASELINE, ()), _COST)
            if ours and base:
                ratios.append(ours / base)
        if ratios:
            means.append((statistics.geometric_mean(ratios), len(ratios), name))
    subject = next((mean for mean, _, name in means if name == SUBJECT), None)
    for mean, count, name in sorted(means):
        versus = f"{subject / mean:.2f}x" if subject is not None else "-"
        rows.append([name, f"{mean:.2f}x", str(count), versus])
    return _markdown(rows) if len(rows) > 2 else ""


def _target(runs: Runs, scenario: str, key: str, peer: str, want: float) -> str | None:
    by_server = runs.get(scenario)
    if not by_server or peer not in by_server or SUBJECT not in by_server:
        return None
    ours, theirs = median(by_server[SUBJECT], key), median(by_server[peer], key)
    if ours is None or not theirs:
        return None
    metric = next(m for m in METRICS[family(scenario)] if m.key == key)
    ratio = ours / theirs
    if metric.higher_is_better:
        met, goal = ratio >= want, f"≥ {want:g}x"
    else:
        met, goal = ratio <= 1 / want, f"≤ {1 / want:g}x"
    verdict = "met" if met else "**not met**"
    return (
        f"{scenario} {metric.label}: wsroute {_fmt(ours, key)}, {peer} {_fmt(theirs, key)}"
        f" → {ratio:.2f}x (target {goal}) — {verdict}"
    )


def targets(runs: Runs) -> str:
    """The floor and goal of issue 7, checked against this run's medians."""
    if not any(SUBJECT in by_server for by_server in runs.values()):
        return f"{SUBJECT} was not in this run."
    lines = ["Floor (every scenario at least as good as bare trio-websocket):"]
    for scenario in runs:
        key = METRICS[family(scenario)][0].key
        line = _target(runs, scenario, key, "trio-websocket", 1.0)
        if line:
            lines.append(f"- {line}")
    lines.append("")
    lines.append("Goal:")
    for scenario in runs:
        kind = family(scenario)
        line = None
        if kind == "rpc":
            line = _target(runs, scenario, "replies_per_s", "starlette", 1.0)
        elif kind == "fanout":
            line = _target(runs, scenario, "deliveries_per_s", "websockets", 0.95)
        elif kind == "churn":
            line = _target(runs, scenario, "cycles_per_s", "websockets", 1.0)
        elif kind == "idle" and SUBJECT in runs[scenario]:
            kib = median(runs[scenario][SUBJECT], "kib_per_conn")
            if kib is not None:
                verdict = "met" if kib <= 15 else "**not met**"
                line = f"{scenario} memory ≤ 15 KiB/connection: {kib:.1f} KiB — {verdict}"
        if line:
            lines.append(f"- {line}")
    return "\n".join(lines)


def _markdown(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        if row[0] == "---":
            cells = ["-" * width for width in widths]
        else:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _speed_note(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """How much the machine's speed drifted during the run, from the calibrations."""
    timings = [
        (f"{scenario} {name} run {i + 1}", run["calibration"])
        for scenario, by_server in runs.items()
        for name, server_runs in by_server.items()
        for i, run in enumerate(server_runs)
        if run.get("calibration")
    ]
    if not timings:
        return ""
    parts, slow = [], set()
    for key, what in (("python_ms", "a Python loop"), ("tcp_ms", "loopback TCP send/recv")):
        values = [calibration[key] for _, calibration in timings]
        fastest = min(values)
        parts.append(f"{what} from {100 * fastest / max(values):.0f}% to 100%")
        slow |= {label for label, c in timings if c[key] > fastest / 0.8}
    text = f"Speed of CPU 0, timed before each run: {', '.join(parts)} of its fastest."
    if slow:
        text += f" Runs below 80%: {', '.join(sorted(slow))}."
    return text


RANKING_NOTE = """\
The server's CPU time (utime + stime of its process) over the measured window divided
by the replies, deliveries or connect cycles: what one operation costs the server,
whatever the speed, so it ranks the servers even where the client was the
bottleneck and the rates are the client's. Cheapest first; `÷ {base}` is the
server's cost in units of {base}'s, `{subject} ÷ server` is {subject}'s cost in units
of the server's (both below 1: cheaper than the other side). **client-bound**: the
client used more than {bound:.0f}% of its core, so the server was not saturated and
handled fewer messages per wake-up; its cost then tends to read high rather than low.
Only ratios within one run mean anything: absolute figures drift by ±25% between runs
and machines."""


def render(
    command: str,
    environment: dict[str, str],
    plan: Plan,
    specs: dict[str, ServerSpec],
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    redis: str,
    profiles: str,
    failures: list[str],
    started: float,
) -> str:
    servers = list(specs)
    capped = [
        f"{scenario} {name}: {run['sent']} of {run['broadcasts']} broadcasts"
        for scenario, by_server in runs.items()
        for name, server_runs in by_server.items()
        for run in server_runs
        if run.get("capped")
    ]
    notes = [_speed_note(runs)]
    if capped:
        cap = f"{plan.publish_seconds:g} s"
        notes.append(f"Fan-out runs that hit the {cap} publishing cap: {'; '.join(capped)}.")
    notes = [note for note in notes if note]
    clients = "one load generator process"
    if plan.loadgens > 1:
        clients = (
            f"{plan.loadgens} load generator processes on CPU {plan.client_cpus} "
            "for rpc, fanout and churn (one for idle)"
        )
    parts = [
        f"# Benchmark report ({datetime.now():%Y-%m-%d %H:%M})",
        f"Command: `{command}` ({time.monotonic() - started:.0f} s). "
        f"Median of {plan.runs} run(s); {clients}.",
        "## Ranking: server CPU µs per operation",
        RANKING_NOTE.format(base=BASELINE, subject=SUBJECT, bound=CLIENT_BOUND),
        ranking_table(runs, servers),
        overall_table(runs, servers),
        "## Results",
        "Ratios are wsroute ÷ peer: above 1 is better for rates (↑), below 1 for the rest.",
        results_table(runs, servers),
        *notes,
        "## CPU (server / client / other processes, % of one core)",
        cpu_table(runs, servers),
        "## Targets",
        targets(runs),
        "## Servers",
        "\n".join(f"- {spec.name}: {spec.settings}" for spec in specs.values()),
        "## Environment",
        "\n".join(f"- {key}: {value}" for key, value in environment.items()),
        "## Plan",
        "\n".join(f"- {key}: {value}" for key, value in asdict(plan).items()),
    ]
    if redis:
        parts += ["## redis-fanout", f"```\n{redis}\n```"]
    if profiles:
        parts += ["## Profiles (py-spy)", f"```\n{profiles}\n```"]
    if failures:
        parts += ["## Failures", "\n".join(f"- {failure}" for failure in failures)]
    return "\n\n".join(part for part in parts if part) + "\n"
