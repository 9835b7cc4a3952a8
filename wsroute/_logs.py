"""Log records as JSON lines, for log pipelines (``wsroute run --log-format json``).

A ``logging.Formatter``, so it works without the CLI: in ``logging.config`` or on any
handler. Each record becomes one JSON object on one line: ``timestamp`` (ISO 8601,
UTC), ``level``, ``logger``, ``message``, then every field the caller passed as
``extra=`` (wsroute passes ``connection_id``, ``user``, ``path``, ``remote``,
``close_code``, ... on the records about a connection), then ``exception`` with the
traceback when there is one. The message is formatted as in text logs, so whatever
is redacted there (credentials in query strings) is redacted here.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

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


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
