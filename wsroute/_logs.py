"""wsroute's default logging, and log records as JSON lines for log pipelines
(``wsroute run --log-format json``).

``wsroute run`` and ``App.run`` log to standard error by default (:func:`log_by_default`),
so whoever starts a server sees where it listens and who connects; ``App.run`` only
when the application configured no logging itself.

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
import sys
from datetime import UTC, datetime
from typing import Any, Final

#: The lines ``wsroute run`` writes by default (``--log-format text``).
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(message)s"
TEXT_DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

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


def log_by_default(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Log records of ``level`` and above to standard error, one line each, in the
    text format or as JSON lines: what ``wsroute run`` does with its ``--log-*``
    options. Like ``logging.basicConfig``, on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter() if json_lines else logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])


def logging_configured() -> bool:
    """Whether the application set up logging itself: a handler on the root logger
    or on wsroute's. Then its choices stand, and no default is added beside them."""
    return bool(logging.getLogger().handlers or logging.getLogger("wsroute").handlers)


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
