"""wsroute's default logging, and log records as JSON lines for log pipelines
(``wsroute run --log-format json``).

``wsroute run`` and ``App.run`` log to standard error by default (:func:`log_by_default`),
so whoever starts a server sees where it listens and who connects; ``App.run`` only
when the application configured no logging itself. Both take the level and the format
from ``WSROUTE_LOG_LEVEL`` and ``WSROUTE_LOG_FORMAT`` (the command's flags win), read
and checked here, so that ``python app.py`` and ``wsroute run`` agree.

:class:`JSONFormatter` is a ``logging.Formatter``, so it works without the CLI: in
``logging.config`` or on any handler. Each record becomes one JSON object on one line:
``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then every field the
caller passed as ``extra=`` (wsroute passes ``connection_id``, ``user``, ``path``,
``remote``, ``close_code``, ... on the records about a connection), then ``exception``
with the traceback when there is one. The message is formatted as in text logs, so
whatever is redacted there (credentials in query strings) is redacted here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

#: The lines ``wsroute run`` writes by default (``--log-format text``).
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(message)s"
TEXT_DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

#: The levels and formats the default logging takes, and their variables.
LEVELS: Final = ("critical", "error", "warning", "info", "debug")
FORMATS: Final = ("text", "json")
LEVEL_VARIABLE: Final = "WSROUTE_LOG_LEVEL"
FORMAT_VARIABLE: Final = "WSROUTE_LOG_FORMAT"

#: What every LogRecord has: not caller fields. ``message`` and ``asctime`` are set
#: by formatters; ``taskName`` exists from Python 3.12.
_RECORD_ATTRIBUTES: Final = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"]
)


class JSONFormatter(logging.Formatter):
    """Formats each record as one line of JSON.

    Usage, without the CLI::

        handler = logging.StreamHandler()
        handler.setFormatter(wsroute.JSONFormatter())
        logging.basicConfig(level="INFO", handlers=[handler])

    or in a ``logging.config.dictConfig`` dict:
    ``"formatters": {"json": {"()": "wsroute.JSONFormatter"}}``.

    A field whose value JSON cannot hold is written as its ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            # Cached as logging.Formatter does, for the record's other handlers.
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=_as_text)


def parse_level(text: str) -> str:
    """A level's name as ``logging`` takes it, from any case (``debug``, ``DEBUG``).

    Raises:
        ValueError: not one of :data:`LEVELS`; the message lists them.
    """
    if text.lower() not in LEVELS:
        raise ValueError(f"invalid log level {text!r}: choose from {', '.join(LEVELS)}")
    return text.upper()


def parse_format(text: str) -> str:
    """A log format: ``text`` or ``json``.

    Raises:
        ValueError: any other value.
    """
    if text not in FORMATS:
        raise ValueError(f"expected {' or '.join(FORMATS)}, not {text!r}")
    return text


def log_by_default(level: str | None = None, *, json_lines: bool | None = None) -> None:
    """Log records of ``level`` and above to standard error, one line each, in the
    text format or as JSON lines: what ``wsroute run`` does with its ``--log-*``
    options. Like ``logging.basicConfig``, on the root logger.

    What is not given comes from ``WSROUTE_LOG_LEVEL`` and ``WSROUTE_LOG_FORMAT``
    (an empty one counts as unset), else ``info`` and ``text``.

    Raises:
        ValueError: a variable's value is invalid; the message names the variable and
            the values it takes, as ``wsroute run`` does.
    """
    if level is None:
        level = _from_environment(LEVEL_VARIABLE, parse_level) or "INFO"
    if json_lines is None:
        json_lines = _from_environment(FORMAT_VARIABLE, parse_format) == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter() if json_lines else logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])


def logging_configured() -> bool:
    """Whether the application set up logging itself: a handler on the root logger
    or on wsroute's. Then its choices stand, and no default is added beside them."""
    return bool(logging.getLogger().handlers or logging.getLogger("wsroute").handlers)


def _from_environment(variable: str, parse: Callable[[str], str]) -> str | None:
    raw = os.environ.get(variable, "")
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {variable}: {exc}") from None


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
