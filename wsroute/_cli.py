"""The ``wsroute`` command: ``run`` serves an app, ``routes`` prints its handler table
and the paths it answers plain GETs at, ``asyncapi`` and ``typescript`` write its
contracts.

A thin shell over :func:`wsroute._importer.load_app` and :meth:`App.run`. Each option
comes from its flag, else its ``WSROUTE_*`` environment variable, else its default.
Exit codes: 0 after a clean shutdown, 1 when the app crashed, could not listen, could
not reach or lost its broker, or was forced down by a second signal, or when a contract
could not be made or written, 2 for a usage or load error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import attrs

from . import _listing as listing
from ._app import App
from ._errors import BrokerError, ListenError, LoadError, RegistrationError, SchemaError
from ._importer import load_app, load_overrides, user_frames
from ._logs import log_by_default
from ._options import OPTIONS, PROG, TLS, build_parser, resolve
from ._supervisor import supervise, usage_problem
from ._tlsfiles import server_context
from ._wire.deflate import Deflate
from .brokers import MemoryBroker, from_url
from .contracts.asyncapi import asyncapi_json, asyncapi_yaml
from .contracts.typescript import typescript

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

T = TypeVar("T")


class _Exit(Exception):
    """Stop the command with an exit code; the message, if any, is already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    """Run the ``wsroute`` command line; returns the process exit code.

    Usage errors exit through argparse (``SystemExit(2)``), as do ``--help`` and
    ``--version`` (``SystemExit(0)``).
    """
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    resolve(args, OPTIONS[args.command], os.environ, subparsers[args.command])
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "asyncapi":
            return _asyncapi(args)
        if args.command == "typescript":
            return _typescript(args)
        return _routes(args)
    except _Exit as stop:
        return stop.code


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _load(spec: str, app_dir: str) -> App:
    return _loading(spec, lambda: load_app(spec, app_dir))


def _load_overrides(spec: str | None, app_dir: str) -> dict[Any, dict[str, Any]] | None:
    """The schemas of ``--overrides``, loaded as the app is (after it: they may import it)."""
    if spec is None:
        return None
    return _loading(spec, lambda: load_overrides(spec, app_dir))


def _loading(spec: str, load: Callable[[], T]) -> T:
    """``load()``, its errors said as one line (or the module's traceback)."""
    try:
        return load()
    except LoadError as exc:
        _error(str(exc))
        raise _Exit(EXIT_USAGE) from None
    except RegistrationError as exc:
        # The app's own definition is wrong and the message says how to fix it: show
        # the user's line that registered it, not wsroute's frames below it.
        where = _app_frame(exc)
        if where is not None:
            shown = f'  File "{where.filename}", line {where.lineno}, in {where.name}'
            print(shown + (f"\n    {where.line}" if where.line else ""), file=sys.stderr)
        _error(str(exc))
        raise _Exit(EXIT_USAGE) from None
    except ValueError as exc:
        if not _raised_by_wsroute(exc):
            _import_failed(spec, exc)
        # A value wsroute refuses, such as App(outbox_size=0): its message names the
        # option and what it takes, so one line, with where, instead of a traceback
        # through attrs' generated code.
        where = _app_frame(exc)
        _error(str(exc) + (f" (at {where.filename}:{where.lineno})" if where else ""))
        raise _Exit(EXIT_USAGE) from None
    except Exception as exc:
        _import_failed(spec, exc)


def _import_failed(spec: str, exc: Exception) -> NoReturn:
    """A bug in the user's module: show where, starting at their code."""
    traceback.print_exception(type(exc), exc, user_frames(exc), file=sys.stderr)
    module = spec.partition(":")[0]
    _error(f"importing {module!r} raised {type(exc).__name__} (traceback above)")
    raise _Exit(EXIT_ERROR) from None


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _app_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``exc``'s traceback in a file outside wsroute: the app's
    line that made the registration (a decorator, an ``add_*`` call) or ``App(...)``.
    Code without a file (``<attrs generated init ...>``) is nobody's line."""
    frames = traceback.extract_tb(user_frames(exc))
    outside = [frame for frame in frames if not frame.filename.startswith((_PACKAGE, "<"))]
    return outside[-1] if outside else None


def _raised_by_wsroute(exc: BaseException) -> bool:
    """Whether wsroute's own code raised ``exc``, refusing what the app gave it,
    rather than the app's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_PACKAGE)


#: How a worker of ``--workers``/``--reload`` serves the app instead of ``App.run``.
Serve = Callable[[App, str, int, ssl.SSLContext | None], None]


def run_as_worker(args: argparse.Namespace, serve: Serve) -> int:
    """``wsroute run`` in a worker process (``wsroute._worker``); the exit code."""
    try:
        return _run(args, serve)
    except _Exit as stop:
        return stop.code


def _run(args: argparse.Namespace, serve: Serve | None = None) -> int:
    json_logs = args.log_format == "json"
    log_by_default(args.log_level.upper(), json_lines=json_logs)
    broker = None
    if args.broker is not None:
        try:
            broker = from_url(args.broker)
        except ValueError as exc:
            _error(str(exc))
            return EXIT_USAGE
    if serve is None:
        problem = usage_problem(args.workers, args.reload)
        if problem is None and isinstance(broker, MemoryBroker):
            problem = _memory_broker_problem(args.workers)
        if problem is not None:
            _error(problem)
            return EXIT_USAGE
    ssl_context = _ssl_context(args)
    if serve is None and (args.workers > 1 or args.reload):
        if broker is None and args.workers > 1:
            # The app's own broker: import the app here, once, to refuse the memory
            # broker before any worker starts (each worker imports it again).
            own = _load(args.app, args.app_dir).broker
            if isinstance(own, MemoryBroker) and (problem := _memory_broker_problem(args.workers)):
                _error(problem)
                return EXIT_USAGE
        return supervise(args, _error)
    app = _load(args.app, args.app_dir)
    if broker is not None:
        app.broker = broker
    if args.compression is not None:
        chosen = Deflate() if args.compression == "deflate" else None
        app.config = attrs.evolve(app.config, compression=chosen)
    app.config = attrs.evolve(
        app.config,
        health_path=_moved(args.health_path, app.config.health_path),
        ready_path=_moved(args.ready_path, app.config.ready_path),
        metrics_path=_moved(args.metrics_path, app.config.metrics_path),
    )
    proxy = {"proxy_headers": args.proxy_headers, "forwarded_allow_ips": args.forwarded_allow_ips}
    if any(value is not None for value in proxy.values()):
        given = {name: value for name, value in proxy.items() if value is not None}
        app.config = attrs.evolve(app.config, **given)
    try:
        if serve is None:
            app.run(args.host, args.port, ssl_context=ssl_context)
        else:
            serve(app, args.host, args.port, ssl_context)
    except Exception as exc:
        # What ends a run for a known reason says which and why in its message: one
        # line. Anything else (a bug in the app) keeps its traceback. In JSON, both
        # are records, so that a log pipeline reads them too.
        known = _single(exc)
        if isinstance(known, RegistrationError):  # a probe moved onto the app's route
            _error(str(known))
            return EXIT_USAGE
        # SchemaError: App(asyncapi=...) found a type without a schema at the start.
        crashed = not isinstance(known, BrokerError | ListenError | SchemaError)
        if json_logs:
            logging.getLogger(PROG).critical(
                "the app crashed" if crashed else str(known), exc_info=exc if crashed else None
            )
            return EXIT_ERROR
        if crashed:
            raise
        _error(str(known))
        return EXIT_ERROR
    return EXIT_OK


def _moved(flag: str | None, path: str | None) -> str | None:
    """A probe's path: the app's own unless the flag moves it, or turns it off."""
    if flag is None:
        return path
    return None if flag == "off" else flag


def _memory_broker_problem(workers: int) -> str | None:
    if workers < 2:
        return None
    return (
        f"--workers {workers} with the memory broker: each worker would have its own, so"
        " broadcasts and presence would not cross workers; share a broker among them:"
        " --broker redis://HOST:6379/0 (or WSROUTE_BROKER)"
    )


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from the --ssl-* options (None without them)."""
    if args.ssl_certfile is None:
        given = [option.flag for option in TLS if getattr(args, option.dest) is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            _error(f"{' and '.join(given)} {verb} --ssl-certfile (or WSROUTE_SSL_CERTFILE)")
            raise _Exit(EXIT_USAGE)
        return None
    try:
        return server_context(args.ssl_certfile, args.ssl_keyfile, args.ssl_keyfile_password)
    except ValueError as exc:
        _error(str(exc))
        raise _Exit(EXIT_USAGE) from None


def _single(exc: BaseException) -> BaseException:
    """The one exception in nested groups of one (trio wraps what ends a nursery)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _routes(args: argparse.Namespace) -> int:
    app = _load(args.app, args.app_dir)
    if args.format == "json":
        print(json.dumps(listing.document(app), indent=2))
    else:
        print(listing.table(app))
    return EXIT_OK


def _asyncapi(args: argparse.Namespace) -> int:
    app = _load(args.app, args.app_dir)
    options: dict[str, Any] = {
        "title": args.title or args.app,
        "version": args.api_version,
        "server": args.server,
        "overrides": _load_overrides(args.overrides, args.app_dir),
    }
    if args.format == "yaml":
        return _write(args.output, lambda: asyncapi_yaml(app, **options).encode())
    return _write(args.output, lambda: asyncapi_json(app, **options))


def _typescript(args: argparse.Namespace) -> int:
    app = _load(args.app, args.app_dir)
    overrides = _load_overrides(args.overrides, args.app_dir)
    return _write(args.output, lambda: typescript(app, overrides=overrides).encode())


def _write(path: str | None, make: Callable[[], bytes]) -> int:
    """Make a contract and write it to ``path`` (standard output for ``None``)."""
    try:
        data = make()
    except (SchemaError, ValueError) as exc:
        _error(f"cannot make the contract: {exc}")
        return EXIT_ERROR
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    try:
        with open(path, "wb") as file:
            file.write(data)
    except OSError as exc:
        _error(f"cannot write {path}: {exc.strerror or exc}")
        return EXIT_ERROR
    return EXIT_OK
