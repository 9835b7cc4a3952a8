"""Run the wsroute benchmark suite side by side with reference servers.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py            # full run, about 25 minutes
    .venv/bin/python benchmarks/run.py --quick    # smoke test, 1 run each, about 3 minutes

Every server runs pinned to CPU 0, the Node.js load generator to CPU 1 (as one
process, or several with ``--loadgens``), on 127.0.0.1; each run starts a fresh
server. Scenarios (README.md has the details): ``rpc``, ``fanout-N``, ``idle-N``,
``churn`` and ``redis-fanout``. The report ranks the servers by server CPU time per
operation. Results go to stdout and to ``benchmarks/results/<time>/`` (report.md,
runs.json, logs, profiles).

The wire: ``--payload N`` sends N catalogue items in every message (about 3 KiB of
JSON for 24), and the servers ``wsroute-msgpack``, ``wsroute-deflate`` and the others
of ``WIRE_VARIANTS`` (only when named in ``--servers``) are wsroute with clients that
speak msgpack, offer permessage-deflate, or both.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

import _procs
import _report
import _runs
import _setup
from _procs import ServerSpec
from _runs import FULL, QUICK, Plan

HERE = Path(__file__).resolve().parent
SERVER_DIR = HERE / "servers"
# Each Python reference server and the venv (benchmarks/.venvs/NAME) it runs in.
VENV_OF = {
    "trio-websocket": "trio-websocket",
    "websockets": "websockets",
    "starlette": "starlette",
    "picows": "picows",
    "picows-uvloop": "picows",
}
REFERENCES = (*VENV_OF, "ws")
#: Another checkout of wsroute (``--baseline DIR``), for before/after figures in one run.
BASELINE = "wsroute-baseline"
ALL_SERVERS = ("wsroute", BASELINE, *REFERENCES)
#: wsroute with other wires: (``wsroute run --compression deflate``?, the options its
#: load generator adds: a share of msgpack connections, permessage-deflate offered).
#: Run only when named in ``--servers``.
WIRE_VARIANTS: dict[str, tuple[bool, dict[str, str]]] = {
    "wsroute-msgpack": (False, {"msgpack": "1"}),
    "wsroute-mixed": (False, {"msgpack": "0.5"}),
    "wsroute-deflate": (True, {"deflate": "1"}),
    "wsroute-msgpack-deflate": (True, {"msgpack": "1", "deflate": "1"}),
    "wsroute-mixed-deflate": (True, {"msgpack": "0.5", "deflate": "1"}),
}
KNOWN_SERVERS = (*ALL_SERVERS, *WIRE_VARIANTS)
NOT_PROFILED = ("ws",)  # py-spy profiles Python only
QUIET = ("--log-level", "warning")  # no log line per connection (both log at info)
FAMILIES = ("rpc", "fanout", "idle", "churn", "redis-fanout")


def server_specs(
    wsroute: Path,
    bins: dict[str, Path],
    node: str,
    baseline: Path | None = None,
    payload: int = 0,
) -> dict[str, ServerSpec]:
    """Every server; ``bins`` holds the reference venvs' ``bin`` directories by venv.
    With a ``payload`` (items per message), wsroute serves the app that types them."""

    def venv(name: str, program: str) -> str:
        return str(bins.get(VENV_OF[name], Path("/nonexistent")) / program)

    app = "wsroute_app:items_app" if payload else "wsroute_app:app"
    items = f" ({app}: {payload} typed items per message)" if payload else ""
    specs = [
        ServerSpec(
            "wsroute",
            (str(wsroute), "run", app, "--port", "{port}", *QUIET),
            SERVER_DIR,
            "`wsroute run` with every App default (ping every 20 s, strict typed payloads, "
            f"outbox 1024 frames, policy close), log level warning{items}",
        ),
        ServerSpec(
            "trio-websocket",
            (venv("trio-websocket", "python"), "trio_websocket_server.py", "{port}"),
            SERVER_DIR,
            "trio-websocket defaults (no ping), stdlib json, naive send loop",
        ),
        ServerSpec(
            "websockets",
            (venv("websockets", "python"), "websockets_server.py", "{port}"),
            SERVER_DIR,
            "websockets.asyncio defaults (ping every 20 s), stdlib json, broadcast()",
        ),
        ServerSpec(
            "starlette",
            (venv("starlette", "uvicorn"), "starlette_app:app", "--port", "{port}", *QUIET),
            SERVER_DIR,
            "uvicorn[standard] defaults (uvloop, httptools, websockets; ping every 20 s), "
            "stdlib json, naive send_text loop, log level warning",
        ),
        ServerSpec(
            "picows",
            (venv("picows", "python"), "picows_server.py", "{port}"),
            SERVER_DIR,
            "picows defaults (no ping, auto pong, aiofastnet transports), default asyncio "
            "loop, stdlib json, a blast encoded once and sent to each connection in turn",
        ),
        ServerSpec(
            "picows-uvloop",
            (venv("picows-uvloop", "python"), "picows_server.py", "{port}", "--uvloop"),
            SERVER_DIR,
            "as picows, on uvloop",
        ),
        ServerSpec(
            "ws",
            (node, "ws_server.mjs", "{port}"),
            SERVER_DIR,
            "Node.js, npm ws defaults (no ping, no compression, no native add-ons), "
            "JSON.parse/JSON.stringify, a blast encoded once and sent to each connection",
        ),
    ]
    for name, (deflate, client) in WIRE_VARIANTS.items():
        compression = ("--compression", "deflate") if deflate else ()
        said = []
        if "msgpack" in client:
            share = "all" if client["msgpack"] == "1" else "half the"
            said.append(f"{share} clients speak msgpack (wsroute.v1.msgpack)")
        if deflate:
            said.append("`--compression deflate` (wsroute.Deflate defaults), clients offer it")
        specs.append(
            ServerSpec(
                name,
                (str(wsroute), "run", app, "--port", "{port}", *compression, *QUIET),
                SERVER_DIR,
                f"as wsroute{items}; {', '.join(said)}",
                tuple(client.items()),
            )
        )
    if baseline is not None:
        # The same command with the other checkout first on the path: the same venv
        # and dependencies, only wsroute's own code differs.
        specs.append(
            ServerSpec(
                BASELINE,
                (
                    *("env", f"PYTHONPATH={baseline}", str(wsroute), "run", app),
                    *("--port", "{port}", *QUIET),
                ),
                SERVER_DIR,
                f"as wsroute, with the wsroute of {baseline} (git {_setup.commit_of(baseline)})",
            )
        )
    return {spec.name: spec for spec in specs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run each, shorter scenarios")
    parser.add_argument("--runs", type=int, help="runs per scenario and server (median)")
    parser.add_argument(
        "--servers", default=",".join(ALL_SERVERS), help="comma-separated subset of servers"
    )
    parser.add_argument(
        "--scenarios", default=",".join(FAMILIES), help="comma-separated subset of scenarios"
    )
    parser.add_argument("--fanout-sizes", help="subscriber counts, e.g. 500,2000")
    parser.add_argument("--idle-sizes", help="connection counts, e.g. 1000,5000")
    parser.add_argument(
        "--payload",
        type=int,
        default=0,
        help="catalogue items in every message (24: about 3 KiB of JSON; default 0: tiny)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument(
        "--profile-servers",
        default="wsroute",
        help="servers to profile under rpc, fanout and churn (default wsroute)",
    )
    parser.add_argument(
        "--loadgens",
        type=int,
        help="load generator processes for rpc, fanout and churn (default 1; idle uses 1)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help=f"a checkout of another wsroute commit (git worktree add DIR COMMIT), served"
        f" as {BASELINE} beside wsroute",
    )
    parser.add_argument(
        "--client-cpus",
        help=f"CPUs for the load generator processes, in turn (default {_procs.CLIENT_CPU})",
    )
    args = parser.parse_args(argv)
    if args.baseline is not None:
        if not (args.baseline / "wsroute" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline}: no wsroute package there")
        if "--servers" not in " ".join(argv or sys.argv):
            args.servers += f",{BASELINE}"
    elif BASELINE in args.servers.split(","):
        args.servers = ",".join(n for n in args.servers.split(",") if n != BASELINE)
    for name in [*args.servers.split(","), *args.profile_servers.split(",")]:
        if name not in KNOWN_SERVERS:
            parser.error(f"unknown server {name!r}: choose from {', '.join(KNOWN_SERVERS)}")
    if args.payload < 0:
        parser.error("--payload needs 0 or more items")
    for name in args.profile_servers.split(","):
        if name in NOT_PROFILED:
            parser.error(f"py-spy cannot profile {name!r} (not a Python server)")
    if args.loadgens is not None and args.loadgens < 1:
        parser.error("--loadgens needs 1 or more")
    if args.client_cpus is not None:
        cpus = args.client_cpus.split(",")
        if not all(cpu.isdigit() for cpu in cpus) or _procs.SERVER_CPU in cpus:
            parser.error(
                f"--client-cpus needs CPU numbers other than the server's ({_procs.SERVER_CPU})"
            )
    for name in args.scenarios.split(","):
        if name not in FAMILIES:
            parser.error(f"unknown scenario {name!r}: choose from {', '.join(FAMILIES)}")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = replace(plan, runs=args.runs)
    if args.fanout_sizes:
        plan = replace(plan, fanout_sizes=tuple(int(n) for n in args.fanout_sizes.split(",")))
    if args.idle_sizes:
        plan = replace(plan, idle_sizes=tuple(int(n) for n in args.idle_sizes.split(",")))
    if args.loadgens:
        plan = replace(plan, loadgens=args.loadgens)
    if args.client_cpus:
        plan = replace(plan, client_cpus=args.client_cpus)
    if args.payload:
        plan = replace(plan, payload=args.payload)
    return plan


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    servers = [name for name in KNOWN_SERVERS if name in args.servers.split(",")]
    families = set(args.scenarios.split(","))
    started = time.monotonic()
    try:
        tools = _setup.check_tools(plan.client_cpus.split(","))
        _setup.ensure_node_modules(tools["npm"])
        wsroute = _setup.check_wsroute()
        venvs = sorted({VENV_OF[name] for name in servers if name in VENV_OF})
        bins = {name: _setup.ensure_venv(name) for name in venvs}
        profiled = [n for n in args.profile_servers.split(",") if n in servers]
        if args.quick or args.no_profile:
            profiled = []
        py_spy = _setup.ensure_venv("tools") / "py-spy" if profiled else None
        _setup.raise_fd_limit(max((*plan.idle_sizes, 0)) + 1024)
        if "wsroute" in servers and max((*plan.idle_sizes, 0)) >= 10_000:
            raise _setup.SetupError("idle sizes must stay below wsroute's max_connections (10000)")
        environment = _setup.describe_environment(bins, tools["node"])
    except _setup.SetupError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    out = HERE / "results" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    specs = {
        name: spec
        for name, spec in server_specs(
            wsroute, bins, tools["node"], args.baseline, plan.payload
        ).items()
        if name in servers
    }
    names = _runs.scenarios(plan, families)
    command = shlex.join([".venv/bin/python", "benchmarks/run.py", *(argv or sys.argv[1:])])
    print(f"{command}\nresults in {out.relative_to(HERE.parent)}", flush=True)
    try:
        runs, failures = _runs.run_matrix(tools["node"], specs, plan, names, out)
        redis = _runs.run_redis_fanout(plan, out) if "redis-fanout" in families else ""
        profiles = ""
        if py_spy is not None:
            targets = [n for n in names if n in ("rpc", "churn") or n.startswith("fanout")]
            to_profile = [specs[name] for name in profiled]
            profiles = _runs.run_profiles(tools["node"], to_profile, py_spy, plan, targets, out)
    finally:
        _procs.stop_all()
    if _setup.wsroute_commit() != environment["wsroute commit"]:
        failures.append(
            f"the work tree changed during the run ({environment['wsroute commit']} → "
            f"{_setup.wsroute_commit()}): later runs may have served other code"
        )
    report = _report.render(
        command, environment, plan, specs, runs, redis, profiles, failures, started
    )
    (out / "report.md").write_text(report)
    (out / "runs.json").write_text(
        json.dumps({"plan": asdict(plan), "environment": environment, "runs": runs}, indent=1)
    )
    print("\n" + report)
    return 1 if failures else 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started with SIGINT ignored
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _procs.stop_all()
        print("\nbenchmarks: interrupted; every server and client was stopped", file=sys.stderr)
        sys.exit(130)
