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
import logging
import os
import re
import sys
import traceback
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import attrs

from . import __version__
from ._app import App
from ._config import Config
from ._errors import BrokerError, ListenError, LoadError, RegistrationError, SchemaError
from ._importer import load_app, user_frames
from ._routing import RouteInfo, describe
from ._wire.deflate import Deflate
from .brokers import from_url
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


def _non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


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
    "run": (_HOST, _PORT, _BROKER, _COMPRESSION, _LOG_LEVEL, _APP_DIR),
    "routes": (_APP_DIR,),
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
            sub.add_argument(
                *filter(None, (option.short, option.flag)),
                type=option.parse,
                default=None,
                metavar=option.metavar,
                help=f"{option.help} ({env}default {default})",
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


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format=LOG_FORMAT,
        datefmt=LOG_DATE_FORMAT,
    )
    broker = None
    if args.broker is not None:
        try:
            broker = from_url(args.broker)
        except ValueError as exc:
            _error(str(exc))
            return EXIT_USAGE
    app = _load(args.app, args.app_dir)
    if broker is not None:
        app.broker = broker
    if args.compression is not None:
        chosen = Deflate() if args.compression == "deflate" else None
        app.config = attrs.evolve(app.config, compression=chosen)
    try:
        app.run(args.host, args.port)
    except Exception as exc:
        # What ends a run for a known reason says which and why in its message: one
        # line. Anything else (a bug in the app) keeps its traceback.
        known = _single(exc)
        if not isinstance(known, BrokerError | ListenError):
            raise
        _error(str(known))
        return EXIT_ERROR
    return EXIT_OK


def _single(exc: BaseException) -> BaseException:
    """The one exception in nested groups of one (trio wraps what ends a nursery)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _routes(args: argparse.Namespace) -> int:
    app = _load(args.app, args.app_dir)
    rows = [("TYPE", "KIND", "PAYLOAD", "RESULT", "TOPIC")]
    rows += [_row(handler) for handler in app.handlers]
    print(_table(rows))
    print()
    print(_table(_formats(app.config)))
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


def _formats(config: Config) -> list[tuple[str, str]]:
    """What a client may speak: the subprotocols (msgpack among them, by default) and
    compression, which shape every message as much as the handlers do."""
    offered = ", ".join(config.subprotocols) or "-"
    if config.subprotocols and not config.require_subprotocol:
        offered += " (or none: JSON)"
    deflate = config.compression
    if deflate is None:
        compression = "off"
    else:
        kept = {True: "kept", False: "none"}
        compression = (
            f"permessage-deflate (from {deflate.threshold} bytes, level {deflate.level}, "
            f"server context {kept[deflate.server_context_takeover]}, "
            f"client context {kept[deflate.client_context_takeover]})"
        )
    return [("SUBPROTOCOLS", offered), ("COMPRESSION", compression)]


def _row(handler: RouteInfo) -> tuple[str, str, str, str, str]:
    topic = handler.topic
    if topic is None:
        shown = "-"
    elif isinstance(topic, str):
        shown = topic
    else:
        shown = f"<fn {describe(topic)}>"
    return (
        handler.name,
        handler.kind.value,
        format_type(handler.payload_type),
        format_type(handler.result_type),
        shown,
    )


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_type(tp: Any) -> str:
    """A type as a reader writes it: ``list[Item]``, ``Item | None``, ``Any``; ``-`` for none.

    Module prefixes are dropped: the table is for scanning, and the handler's module
    is where the reader looks the names up.
    """
    if tp is None:
        return "-"
    if tp is Any:
        return "Any"
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if isinstance(tp, list):  # the parameter list of Callable[[...], R]
        return f"[{', '.join(format_type(arg) for arg in tp)}]"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return format_type(args[0])
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(format_type(arg) for arg in args)
    if origin is not None and args:
        return f"{format_type(origin)}[{', '.join(format_type(arg) for arg in args)}]"
    if isinstance(tp, type):
        return tp.__name__
    return re.sub(r"\b(?:\w+\.)+", "", repr(tp)).removeprefix("~")
