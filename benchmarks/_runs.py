"""The measured runs: the plan, one scenario against one server, the whole matrix.

Each run starts a fresh server, waits for the machine to go quiet, times CPU 0
(:func:`calibrate`), runs the load generator and stops the server. The profiles and
the Redis fan-out script run here too.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import _procs
import _profile
import _report
from _procs import BenchError, ServerSpec

HERE = Path(__file__).resolve().parent
Runs = dict[str, dict[str, list[dict[str, Any]]]]


@dataclass(frozen=True)
class Plan:
    runs: int = 3
    rpc_clients: int = 50
    rpc_seconds: float = 10.0
    warmup: float = 1.0
    fanout_sizes: tuple[int, ...] = (500, 2000)
    broadcasts: int = 200
    window: int = 8
    publish_seconds: float = 30.0  # fan-out: no new broadcast after this (bounds the run)
    idle_sizes: tuple[int, ...] = (1000, 5000)
    churn_workers: int = 16
    churn_seconds: float = 5.0
    redis_args: tuple[str, ...] = ()
    quiet_wait: float = 3.0  # seconds to wait for other processes to go quiet
    noisy_retries: int = 1  # extra tries of a run during which other processes were busy
    loadgens: int = 1  # load generator processes for rpc, fanout and churn (idle: 1)
    client_cpus: str = _procs.CLIENT_CPU  # their CPUs, in turn ("1" or "1,2")
    payload: int = 0  # catalogue items in every echo and blast (0: the tiny {seq, t})


FULL = Plan()
QUICK = Plan(
    runs=1,
    rpc_seconds=2.0,
    warmup=0.5,
    fanout_sizes=(500,),
    broadcasts=50,
    publish_seconds=10.0,
    idle_sizes=(1000,),
    churn_seconds=2.0,
    redis_args=("--rates", "300", "--seconds", "2"),
    quiet_wait=1.0,
    noisy_retries=0,
)


def scenarios(plan: Plan, families: set[str]) -> list[str]:
    names = []
    if "rpc" in families:
        names.append("rpc")
    names += [f"fanout-{n}" for n in plan.fanout_sizes if "fanout" in families]
    names += [f"idle-{n}" for n in plan.idle_sizes if "idle" in families]
    if "churn" in families:
        names.append("churn")
    return names


def loadgen_options(
    plan: Plan, scenario: str, spec: ServerSpec
) -> tuple[str, dict[str, float | str], float]:
    """The load generator's scenario, options and time limit for ``scenario`` against
    ``spec`` (whose clients may speak another wire)."""
    kind, _, size = scenario.partition("-")
    wire: dict[str, float | str] = dict(spec.client)
    if plan.payload:
        wire["payload"] = plan.payload
    if kind == "idle":
        return kind, {"connections": int(size), "hold": 120, **wire}, 240
    opts: dict[str, float | str]
    if kind == "rpc":
        opts = {"clients": plan.rpc_clients, "seconds": plan.rpc_seconds, "warmup": plan.warmup}
        limit = plan.rpc_seconds + plan.warmup + 60
    elif kind == "fanout":
        opts = {
            "subscribers": int(size),
            "broadcasts": plan.broadcasts,
            "window": plan.window,
            "publish-seconds": plan.publish_seconds,
        }
        limit = plan.publish_seconds + 120
    else:
        opts = {"workers": plan.churn_workers, "seconds": plan.churn_seconds}
        limit = 90
    if plan.loadgens > 1:
        opts |= {"procs": plan.loadgens, "cpus": plan.client_cpus}
    return kind, opts | wire, limit


def wait_for_quiet(limit: float) -> float:
    """Wait (up to ``limit`` s) until other processes use < 30% of a core; return it.

    Between runs this runner starts nothing, so whatever is busy is someone else.
    """
    deadline = time.monotonic() + limit
    while True:
        busy = _busy_percent(0.3)
        if busy < 30 or time.monotonic() > deadline:
            return busy
        time.sleep(0.5)


def calibrate() -> dict[str, float]:
    """Time two fixed workloads on the server CPU: how fast that core is right now.

    ``python_ms``: a pure-Python loop; ``tcp_ms``: 5000 small send/recv pairs over
    loopback TCP. On a virtual machine the host can slow a core or its system calls
    down without any steal time showing inside; this makes such drift visible.
    """
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(_procs.SERVER_CPU)})
    try:
        python_s = tcp_s = float("inf")
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            socket.create_connection(server.getsockname()) as client,
        ):
            peer, _ = server.accept()
            with peer:
                for _ in range(3):
                    began = time.perf_counter()
                    total = 0
                    for i in range(100_000):
                        total += i % 7
                    python_s = min(python_s, time.perf_counter() - began)
                    began = time.perf_counter()
                    for _ in range(5000):
                        client.send(b"x" * 64)
                        peer.recv(100)
                    tcp_s = min(tcp_s, time.perf_counter() - began)
    finally:
        os.sched_setaffinity(0, allowed)
    return {"python_ms": round(python_s * 1000, 2), "tcp_ms": round(tcp_s * 1000, 2)}


def _busy_percent(seconds: float) -> float:
    def ticks() -> int:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[1]) + int(fields[2]) + int(fields[3])

    before = ticks()
    time.sleep(seconds)
    return 100 * (ticks() - before) / _procs.CLK_TCK / seconds


def run_once(
    node: str, spec: ServerSpec, plan: Plan, scenario: str, log_dir: Path
) -> dict[str, Any]:
    kind, options, timeout = loadgen_options(plan, scenario, spec)
    cpu = plan.client_cpus.split(",")[0]
    server = _procs.start_server(spec, log_dir)
    try:
        if kind != "idle":
            result = _procs.run_loadgen(node, kind, server, options, timeout=timeout, cpu=cpu)
            _add_cpu_per_op(result)
            return result
        rss: dict[str, int] = {}

        def on_event(event: dict[str, Any], stdin: IO[str]) -> None:
            time.sleep(0.5 if event["event"] == "baseline" else 1.5)
            rss["before" if event["event"] == "baseline" else "after"] = server.rss_kib()
            stdin.write("go\n")
            stdin.flush()

        result = _procs.run_loadgen(
            node, kind, server, options, timeout=timeout, cpu=cpu, on_event=on_event
        )
        result["rss_before_kib"], result["rss_after_kib"] = rss["before"], rss["after"]
        result["baseline_mib"] = round(rss["before"] / 1024, 1)
        result["kib_per_conn"] = round((rss["after"] - rss["before"]) / result["connections"], 2)
        return result
    finally:
        _procs.stop_server(server)


_COUNTS = {"rpc": "replies", "fanout": "received", "churn": "cycles"}


def _add_cpu_per_op(result: dict[str, Any]) -> None:
    """Server CPU time per reply / delivery / cycle, in µs: cost independent of speed."""
    count = result.get(_COUNTS.get(result["scenario"], ""))
    if count and result.get("server_cpu") is not None:
        cpu_seconds = result["server_cpu"] / 100 * result["window_s"]
        result["server_us_per_op"] = round(cpu_seconds * 1e6 / count, 1)


def _summary(scenario: str, result: dict[str, Any]) -> str:
    metric = _report.METRICS[_report.family(scenario)][0]
    text = f"{metric.label} {result.get(metric.key)}"
    if "server_cpu" in result:
        text += f" (server {result['server_cpu']}%, client {result['client_cpu']}%"
        if result.get("loadgens"):
            text += f" in {result['loadgens']} processes"
        text += f", other {result.get('other_cpu')}%)"
    if result.get("capped"):
        text += f" capped after {result['sent']} broadcasts"
    for key in ("lost", "errors", "closed_early"):
        if result.get(key):
            text += f" {key}={result[key]}"
    return text


def run_noise_aware(
    node: str, spec: ServerSpec, plan: Plan, scenario: str, out: Path, label: str
) -> dict[str, Any]:
    """One run; repeated (``plan.noisy_retries`` times) if other processes were busy.

    The machine may be shared: of the tries, the one with the least CPU taken by
    other processes during the measured window is kept.
    """
    tries = []
    for attempt in range(1 + plan.noisy_retries):
        busy = wait_for_quiet(plan.quiet_wait)
        calibration = calibrate()
        began = time.monotonic()
        result = run_once(node, spec, plan, scenario, out)
        result["busy_before"] = round(busy, 1)
        result["calibration"] = calibration
        result["elapsed_s"] = round(time.monotonic() - began, 1)
        result["attempt"] = attempt + 1
        tries.append(result)
        noisy = (result.get("other_cpu") or 0) > _report.NOISY
        note = f" [machine busy {busy:.0f}% before the run]" if busy >= 30 else ""
        if noisy and attempt < plan.noisy_retries:
            note += " [other processes were busy: trying again]"
        print(f"{label}: {_summary(scenario, result)}{note}", flush=True)
        if not noisy:
            break
    return min(tries, key=lambda r: r.get("other_cpu") or 0)


def run_matrix(
    node: str, specs: dict[str, ServerSpec], plan: Plan, names: list[str], out: Path
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[str]]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failures: list[str] = []
    order = list(specs)
    total = len(names) * plan.runs * len(order)
    step = 0
    for scenario in names:
        runs[scenario] = {name: [] for name in order}
        for rep in range(plan.runs):
            rotated = order[rep % len(order) :] + order[: rep % len(order)]
            for name in rotated:
                step += 1
                label = f"[{step}/{total}] {scenario:<12} {name:<15} run {rep + 1}"
                try:
                    result = run_noise_aware(node, specs[name], plan, scenario, out, label)
                except BenchError as exc:
                    failures.append(f"{scenario} {name} run {rep + 1}: {exc}")
                    print(f"{label}: FAILED: {exc}", flush=True)
                    continue
                runs[scenario][name].append(result)
    return runs, failures


def run_redis_fanout(plan: Plan, out: Path) -> str:
    """Run the cross-process Redis fan-out benchmark, if it is there and works."""
    script = HERE / "redis_fanout.py"
    if not script.exists():
        return "benchmarks/redis_fanout.py is not there: redis-fanout skipped."
    probe = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        return f"redis_fanout.py --help failed, redis-fanout skipped:\n{probe.stderr[-1500:]}"
    cmd = [sys.executable, str(script), *plan.redis_args]
    print(f"redis-fanout: {shlex.join(cmd)}", flush=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return "redis_fanout.py did not finish within 300 s."
    (out / "redis-fanout.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return f"redis_fanout.py failed (exit {done.returncode}):\n{done.stderr[-1500:]}"
    return f"$ {shlex.join(cmd)}\n{done.stdout.strip()}"


def run_profiles(
    node: str, specs: list[ServerSpec], py_spy: Path, plan: Plan, names: list[str], out: Path
) -> str:
    """Profile each server of ``specs`` under ``names``; return the summaries."""
    summaries = []
    plan = replace(plan, publish_seconds=min(plan.publish_seconds, 15.0))
    for spec in specs:
        for scenario in names:
            kind, options, timeout = loadgen_options(plan, scenario, spec)
            raw = out / f"profile-{spec.name}-{scenario}.txt"
            wrap = _profile.py_spy_command(str(py_spy), raw)
            try:
                server = _procs.start_server(spec, out, wrap=wrap)
                try:
                    cpu = plan.client_cpus.split(",")[0]
                    result = _procs.run_loadgen(
                        node, kind, server, options, timeout=timeout, cpu=cpu
                    )
                finally:
                    _procs.stop_server(server)
            except BenchError as exc:
                print(f"profile {spec.name} {scenario}: FAILED: {exc}", flush=True)
                summaries.append(f"{raw.name}: failed: {exc}\n")
                continue
            _add_cpu_per_op(result)
            print(f"profile {spec.name} {scenario}: {_summary(scenario, result)}", flush=True)
            if raw.exists():
                summary = _profile.summarise(raw)
                raw.with_name(f"{raw.stem}-summary.txt").write_text(summary)
                summaries.append(summary)
            else:
                summaries.append(f"{raw.name}: py-spy wrote no profile (see the server log)\n")
    return "\n".join(summaries)
