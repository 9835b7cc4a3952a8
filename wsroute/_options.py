"""The options of the ``wsroute`` command: each one's flag, ``WSROUTE_*`` environment
variable, default and parser, per subcommand, and the argparse parser built from
them. A flag wins over its variable, which wins over the default (``resolve``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__
from . import _option_values as values
from ._logs import FORMAT_VARIABLE, LEVEL_VARIABLE, LEVELS, parse_format

PROG = "wsroute"


@dataclass(frozen=True)
class Option:
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


_HOST = Option("--host", "WSROUTE_HOST", "127.0.0.1", values.non_empty, "HOST", "interface to bind")
_PORT = Option(
    "--port", "WSROUTE_PORT", "8000", values.port, "PORT", "TCP port; 0 picks a free one"
)
_BROKER = Option(
    "--broker",
    "WSROUTE_BROKER",
    None,
    values.non_empty,
    "URL",
    "replace the app's broker, e.g. memory://",
    unset="the app's own broker",
)
# Read and checked as App.run reads the variables (wsroute._logs).
_LOG_LEVEL = Option(
    "--log-level",
    LEVEL_VARIABLE,
    "info",
    values.argument(values.log_level),
    "LEVEL",
    "/".join(LEVELS),
)
_APP_DIR = Option(
    "--app-dir",
    "WSROUTE_APP_DIR",
    ".",
    values.non_empty,
    "DIR",
    "directory put first on sys.path before importing MODULE",
)
_COMPRESSION = Option(
    "--compression",
    "WSROUTE_COMPRESSION",
    None,
    values.compression,
    "deflate|off",
    "permessage-deflate for clients that offer it (deflate: the defaults of wsroute.Deflate)",
    unset="the app's own compression option",
)
# The plain GET probes (docs/metrics.md): the App option each one overrides.
_PROBES = {
    option: Option(
        f"--{option.replace('_', '-')}",
        f"WSROUTE_{option.upper()}",
        None,
        values.probe_path,
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
_LOG_FORMAT = Option(
    "--log-format",
    FORMAT_VARIABLE,
    "text",
    values.argument(parse_format),
    "text|json",
    "text: one line per record; json: one JSON object per record (docs/deployment.md)",
)
_PROXY_HEADERS = Option(
    "--proxy-headers",
    "WSROUTE_PROXY_HEADERS",
    None,
    values.boolean,
    "",
    "take the client's address and scheme from X-Forwarded-For/-Proto or Forwarded of a"
    " trusted peer",
    unset="the app's proxy_headers option, on unless changed",
    switch=True,
)
_FORWARDED_ALLOW_IPS = Option(
    "--forwarded-allow-ips",
    "WSROUTE_FORWARDED_ALLOW_IPS",
    None,
    values.trusted_ips,
    "IPS",
    "the trusted proxies: comma-separated addresses and networks, or *",
    unset="the app's forwarded_allow_ips option, 127.0.0.1 unless changed",
)
_ROUTES_FORMAT = Option(
    "--format",
    "WSROUTE_ROUTES_FORMAT",
    "table",
    values.choice("table", "json"),
    "table|json",
    "a table to read, or a JSON document for tools",
)
_WORKERS = Option(
    "--workers",
    "WSROUTE_WORKERS",
    "1",
    values.worker_count,
    "N",
    "worker processes sharing the port (Linux, SO_REUSEPORT); 1 serves in this process",
)
_RELOAD = Option(
    "--reload",
    "WSROUTE_RELOAD",
    "off",
    values.switch,
    "",
    "restart when a Python file under --app-dir changes (development; needs watchfiles)",
    switch=True,
)
_SSL_CERTFILE = Option(
    "--ssl-certfile",
    "WSROUTE_SSL_CERTFILE",
    None,
    values.non_empty,
    "FILE",
    "serve TLS (wss://) with this PEM certificate chain",
    unset="no TLS",
)
_SSL_KEYFILE = Option(
    "--ssl-keyfile",
    "WSROUTE_SSL_KEYFILE",
    None,
    values.non_empty,
    "FILE",
    "the certificate's PEM private key",
    unset="in --ssl-certfile",
)
_SSL_KEYFILE_PASSWORD = Option(
    "--ssl-keyfile-password",
    "WSROUTE_SSL_KEYFILE_PASSWORD",
    None,
    values.non_empty,
    "PASSWORD",
    "the password of an encrypted private key",
    unset="none",
)
_PROCESSES = (_WORKERS, _RELOAD)
TLS = (_SSL_CERTFILE, _SSL_KEYFILE, _SSL_KEYFILE_PASSWORD)
_OUTPUT = Option(
    "--output",
    "",
    None,
    values.non_empty,
    "FILE",
    "write to FILE",
    unset="standard output",
    short="-o",
)
_FORMAT = Option(
    "--format", "", "json", values.document_format, "json|yaml", "the document's format"
)
_SERVER = Option(
    "--server",
    "WSROUTE_SERVER_URL",
    "ws://localhost:8000/",
    values.ws_url,
    "URL",
    "the URL clients connect to, in the document's servers",
)
_TITLE = Option("--title", "", None, values.non_empty, "TEXT", "info.title", unset="MODULE:ATTR")
_API_VERSION = Option(
    "--api-version", "", "0.1.0", values.non_empty, "TEXT", "info.version: your API's version"
)
_OVERRIDES = Option(
    "--overrides",
    "",
    None,
    values.non_empty,
    "MODULE:ATTR",
    "a dict {type: JSON Schema} for the types the app's converter reads with hooks of its"
    " own, loaded as the app is",
    unset="none",
)
OPTIONS: Mapping[str, Sequence[Option]] = {
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
        *TLS,
    ),
    "routes": (_APP_DIR, _ROUTES_FORMAT),
    "asyncapi": (_FORMAT, _OUTPUT, _SERVER, _TITLE, _API_VERSION, _OVERRIDES, _APP_DIR),
    "typescript": (_OUTPUT, _OVERRIDES, _APP_DIR),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
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
    for name, options in OPTIONS.items():
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


def resolve(
    args: argparse.Namespace,
    options: Sequence[Option],
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
