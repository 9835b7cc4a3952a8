"""The ``wsroute`` command: ``run`` serves an app, ``routes`` prints its handler table,
``asyncapi`` and ``typescript`` write its contracts.

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
import re
import ssl
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import attrs

from . import __version__
from . import _listing as listing
from ._app import App
from ._errors import BrokerError, ListenError, LoadError, RegistrationError, SchemaError
from ._importer import load_app, user_frames
from ._logs import JSONFormatter
from ._proxy import TrustedProxies
from ._supervisor import supervise, usage_problem
from ._wire.deflate import Deflate
from .brokers import MemoryBroker, from_url
from .contracts.asyncapi import asyncapi_json, asyncapi_yaml
from .contracts.typescript import typescript

PROG = "wsroute"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class _Exit(Exception):
    """Stop the command with an exit code; the message, if any, is already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid port {text!r}: expected an integer from 0 to 65535 (0 picks a free port)"
        )
    return port


def _log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid log level {text!r}: choose from {', '.join(LOG_LEVELS)}"
        )
    return text.lower()


def _compression(text: str) -> str:
    if text not in ("deflate", "off"):
        raise argparse.ArgumentTypeError(f"expected deflate or off, not {text!r}")
    return text


def _probe_path(text: str) -> str:
    if text != "off" and (not text.startswith("/") or "?" in text or "#" in text):
        raise argparse.ArgumentTypeError(f"expected a path such as /healthz, or off, not {text!r}")
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected {' or '.join(choices)}, not {text!r}")
        return text

    return parse


def _boolean(text: str) -> bool:
    """An environment variable's truth value (flags are ``--x``/``--no-x``)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _trusted_ips(text: str) -> str:
    try:
        TrustedProxies.parse(text)
    except ValueError as exc:
        message = str(exc).removeprefix("App option forwarded_allow_ips ")
        raise argparse.ArgumentTypeError(message) from None
    return text


def _non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}: expected an integer >= 1")
    return count


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(text: str) -> bool:
    """An on/off option's environment variable."""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(_TRUE + _FALSE)}, not {text!r}")


def _format(text: str) -> str:
    if text not in ("json", "yaml"):
        raise argparse.ArgumentTypeError(f"expected json or yaml, not {text!r}")
    return text


def _ws_url(text: str) -> str:
    if not re.fullmatch(r"wss?://[^/?#\s]+(/\S*)?", text):
        raise argparse.ArgumentTypeError(
            f"expected the URL clients connect to, ws:// or wss://, not {text!r}"
        )
    return text


@dataclass(frozen=True)
class _Option:
    """A command's option: its flag, environment variable (``""``: none) and default."""

    flag: str
    env: str
    default: str | None
    parse: Callable[[str], Any]
    metavar: str
    help: str
    unset: str = ""  # what an option without a default means, for --help
    switch: bool = False  # a --x/--no-x pair; ``parse`` reads the environment variable
    short: str = ""  # a one-letter form, e.g. -o

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


_HOST = _Option("--host", "WSROUTE_HOST", "127.0.0.1", _non_empty, "HOST", "interface to bind")
_PORT = _Option("--port", "WSROUTE_PORT", "8000", _port, "PORT", "TCP port; 0 picks a free one")
_BROKER = _Option(
    "--broker",
    "WSROUTE_BROKER",
    None,
    _non_empty,
    "URL",
    "replace the app's broker, e.g. memory://",
    unset="the app's own broker",
)
_LOG_LEVEL = _Option(
    "--log-level", "WSROUTE_LOG_LEVEL", "info", _log_level, "LEVEL", "/".join(LOG_LEVELS)
)
_APP_DIR = _Option(
    "--app-dir",
    "WSROUTE_APP_DIR",
    ".",
    _non_empty,
    "DIR",
    "directory put first on sys.path before importing MODULE",
)
_COMPRESSION = _Option(
    "--compression",
    "WSROUTE_COMPRESSION",
    None,
    _compression,
    "deflate|off",
    "permessage-deflate for clients that offer it (deflate: the defaults of wsroute.Deflate)",
    unset="the app's own compression option",
)
# The plain GET probes (docs/metrics.md): the App option each one overrides.
_PROBES = {
    option: _Option(
        f"--{option.replace('_', '-')}",
        f"WSROUTE_{option.upper()}",
        None,
        _probe_path,
        "PATH|off",
        f"serve {what} at PATH, or not at all",
        unset=f"the app's {option}",
    )
    for option, what in (
        ("health_path", "the health check"),
        ("ready_path", "the readiness check"),
        ("metrics_path", "the Prometheus metrics"),
    )
}
_LOG_FORMAT = _Option(
    "--log-format",
    "WSROUTE_LOG_FORMAT",
    "text",
    _choice("text", "json"),
    "text|json",
    "text: one line per record; json: one JSON object per record (docs/deployment.md)",
)
_PROXY_HEADERS = _Option(
    "--proxy-headers",
    "WSROUTE_PROXY_HEADERS",
    None,
    _boolean,
    "",
    "take the client's address from X-Forwarded-For/Forwarded of a trusted peer",
    unset="the app's proxy_headers option, on unless changed",
    switch=True,
)
_FORWARDED_ALLOW_IPS = _Option(
    "--forwarded-allow-ips",
    "WSROUTE_FORWARDED_ALLOW_IPS",
    None,
    _trusted_ips,
    "IPS",
    "the trusted proxies: comma-separated addresses and networks, or *",
    unset="the app's forwarded_allow_ips option, 127.0.0.1 unless changed",
)
_ROUTES_FORMAT = _Option(
    "--format",
    "WSROUTE_ROUTES_FORMAT",
    "table",
    _choice("table", "json"),
    "table|json",
    "a table to read, or a JSON document for tools",
)
_WORKERS = _Option(
    "--workers",
    "WSROUTE_WORKERS",
    "1",
    _workers,
    "N",
    "worker processes sharing the port (Linux, SO_REUSEPORT); 1 serves in this process",
)
_RELOAD = _Option(
    "--reload",
    "WSROUTE_RELOAD",
    "off",
    _switch,
    "",
    "restart when a Python file under --app-dir changes (development; needs watchfiles)",
    switch=True,
)
_SSL_CERTFILE = _Option(
    "--ssl-certfile",
    "WSROUTE_SSL_CERTFILE",
    None,
    _non_empty,
    "FILE",
    "serve TLS (wss://) with this PEM certificate chain",
    unset="no TLS",
)
_SSL_KEYFILE = _Option(
    "--ssl-keyfile",
    "WSROUTE_SSL_KEYFILE",
    None,
    _non_empty,
    "FILE",
    "the certificate's PEM private key",
    unset="in --ssl-certfile",
)
_SSL_KEYFILE_PASSWORD = _Option(
    "--ssl-keyfile-password",
    "WSROUTE_SSL_KEYFILE_PASSWORD",
    None,
    _non_empty,
    "PASSWORD",
    "the password of an encrypted private key",
    unset="none",
)
_PROCESSES = (_WORKERS, _RELOAD)
_TLS = (_SSL_CERTFILE, _SSL_KEYFILE, _SSL_KEYFILE_PASSWORD)
_OUTPUT = _Option(
    "--output", "", None, _non_empty, "FILE", "write to FILE", unset="standard output", short="-o"
)
_FORMAT = _Option("--format", "", "json", _format, "json|yaml", "the document's format")
_SERVER = _Option(
    "--server",
    "WSROUTE_SERVER_URL",
    "ws://localhost:8000/",
    _ws_url,
    "URL",
    "the URL clients connect to, in the document's servers",
)
_TITLE = _Option("--title", "", None, _non_empty, "TEXT", "info.title", unset="MODULE:ATTR")
_API_VERSION = _Option(
    "--api-version", "", "0.1.0", _non_empty, "TEXT", "info.version: your API's version"
)
_OPTIONS: Mapping[str, Sequence[_Option]] = {
    "run": (
        _HOST,
        _PORT,
        _BROKER,
        _COMPRESSION,
        *_PROBES.values(),
        _LOG_LEVEL,
        _LOG_FORMAT,
        _PROXY_HEADERS,
        _FORWARDED_ALLOW_IPS,
        _APP_DIR,
        *_PROCESSES,
        *_TLS,
    ),
    "routes": (_APP_DIR, _ROUTES_FORMAT),
    "asyncapi": (_FORMAT, _OUTPUT, _SERVER, _TITLE, _API_VERSION, _APP_DIR),
    "typescript": (_OUTPUT, _APP_DIR),
}


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve and inspect wsroute apps. Apps are named MODULE:ATTR."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    summaries = {
        "run": "serve the app until SIGINT/SIGTERM (a second signal exits at once)",
        "routes": "print the app's handler table",
        "asyncapi": "write the app's AsyncAPI 3.0 document (docs/contracts.md)",
        "typescript": "write TypeScript declarations of the app's types and routes",
    }
    subparsers = {}
    for name, options in _OPTIONS.items():
        sub = commands.add_parser(name, help=summaries[name], description=summaries[name])
        sub.add_argument("app", metavar="MODULE:ATTR", help="the App to load, e.g. app:app")
        for option in options:
            default = option.default or option.unset
            env = f"env {option.env}; " if option.env else ""
            help = f"{option.help} ({env}default {default})"
            if option.switch:
                sub.add_argument(
                    option.flag, action=argparse.BooleanOptionalAction, default=None, help=help
                )
                continue
            sub.add_argument(
                *filter(None, (option.short, option.flag)),
                type=option.parse,
                default=None,
                metavar=option.metavar,
                help=help,
            )
        subparsers[name] = sub
    return parser, subparsers


def _resolve(
    args: argparse.Namespace,
    options: Sequence[_Option],
    environ: Mapping[str, str],
    parser: argparse.ArgumentParser,
) -> None:
    """Fill options not given as flags from the environment, then from defaults."""
    for option in options:
        if getattr(args, option.dest) is not None:
            continue
        raw = environ.get(option.env, "") if option.env else ""
        value: Any = None
        if raw:
            try:
                value = option.parse(raw)
            except argparse.ArgumentTypeError as exc:
                parser.error(f"environment variable {option.env}: {exc}")
        elif option.default is not None:
            value = option.parse(option.default)
        setattr(args, option.dest, value)


def main(argv: list[str] | None = None) -> int:
    """Run the ``wsroute`` command line; returns the process exit code.

    Usage errors exit through argparse (``SystemExit(2)``), as do ``--help`` and
    ``--version`` (``SystemExit(0)``).
    """
    parser, subparsers = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _resolve(args, _OPTIONS[args.command], os.environ, subparsers[args.command])
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
    try:
        return load_app(spec, app_dir)
    except LoadError as exc:
        _error(str(exc))
        raise _Exit(EXIT_USAGE) from None
    except RegistrationError as exc:
        # The app's own definition is wrong and the message says how to fix it: show
        # the user's line that registered it, not wsroute's frames below it.
        where = _registering_frame(exc)
        if where is not None:
            shown = f'  File "{where.filename}", line {where.lineno}, in {where.name}'
            print(shown + (f"\n    {where.line}" if where.line else ""), file=sys.stderr)
        _error(str(exc))
        raise _Exit(EXIT_USAGE) from None
    except Exception as exc:
        # A bug in the user's module: show where, starting at their code.
        traceback.print_exception(type(exc), exc, user_frames(exc), file=sys.stderr)
        module = spec.partition(":")[0]
        _error(f"importing {module!r} raised {type(exc).__name__} (traceback above)")
        raise _Exit(EXIT_ERROR) from None


def _registering_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``exc``'s traceback outside wsroute: the app's line
    that made the registration (a decorator, an ``add_*`` call)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frames = traceback.extract_tb(user_frames(exc))
    outside = [frame for frame in frames if not frame.filename.startswith(package)]
    return outside[-1] if outside else None


#: How a worker of ``--workers``/``--reload`` serves the app instead of ``App.run``.
Serve = Callable[[App, str, int, ssl.SSLContext | None], None]


def run_as_worker(args: argparse.Namespace, serve: Serve) -> int:
    """``wsroute run`` in a worker process (``wsroute._worker``); the exit code."""
    try:
        return _run(args, serve)
    except _Exit as stop:
        return stop.code


def _run(args: argparse.Namespace, serve: Serve | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    json_logs = args.log_format == "json"
    handler.setFormatter(
        JSONFormatter() if json_logs else logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT)
    )
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
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
        return supervise(args, _error)
    app = _load(args.app, args.app_dir)
    if broker is not None:
        app.broker = broker
    if isinstance(app.broker, MemoryBroker) and (problem := _memory_broker_problem(args.workers)):
        _error(problem)  # the first worker says it, once: the app's own broker
        return EXIT_USAGE
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
        if json_logs:
            crashed = not isinstance(known, BrokerError | ListenError)
            logging.getLogger(PROG).critical(
                "the app crashed" if crashed else str(known), exc_info=exc if crashed else None
            )
            return EXIT_ERROR
        if not isinstance(known, BrokerError | ListenError):
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
        given = [option.flag for option in _TLS if getattr(args, option.dest) is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            _error(f"{' and '.join(given)} {verb} --ssl-certfile (or WSROUTE_SSL_CERTFILE)")
            raise _Exit(EXIT_USAGE)
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(args.ssl_certfile, args.ssl_keyfile, args.ssl_keyfile_password)
    except (OSError, ssl.SSLError) as exc:
        files = args.ssl_certfile + (f" and {args.ssl_keyfile}" if args.ssl_keyfile else "")
        _error(
            f"cannot load the TLS certificate and key from {files}: {exc} (check the paths,"
            " that the key matches the certificate, and --ssl-keyfile-password)"
        )
        raise _Exit(EXIT_USAGE) from None
    return context


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
    options = {"title": args.title or args.app, "version": args.api_version, "server": args.server}
    if args.format == "yaml":
        return _write(args.output, lambda: asyncapi_yaml(app, **options).encode())
    return _write(args.output, lambda: asyncapi_json(app, **options))


def _typescript(args: argparse.Namespace) -> int:
    app = _load(args.app, args.app_dir)
    return _write(args.output, lambda: typescript(app).encode())


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
