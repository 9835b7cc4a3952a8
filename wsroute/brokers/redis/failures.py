"""How a failure of Redis reads in wsroute's logs: in one line, with its root cause.

The link (``link.py``, ``publisher.py``, ``subscriptions.py``), the topology reader
(``topology.py``) and the session report why Redis failed them as text; this module
is where that text is made, so every one of them reads alike. It also keeps coredis'
own traceback for a lost or refused connection out of the logs, since the session
logs that loss itself in one line.
"""

from __future__ import annotations

import logging
import os

from coredis.exceptions import AuthenticationRequiredError

_QUIET = frozenset(("Connection closed unexpectedly!", "Connection attempt failed unexpectedly!"))


class _QuietConnectionLoss(logging.Filter):
    """Drop coredis' traceback for a lost or refused connection: the session logs it in
    one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _QUIET


logging.getLogger("coredis").addFilter(_QuietConnectionLoss())


def explain(exc: BaseException) -> str:
    """``exc`` and its root cause in one line, e.g. "... to 127.0.0.1:1: Connection refused"."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(exc) or type(exc).__name__
    if isinstance(exc, AuthenticationRequiredError):
        # Redis answers a URL without a password with a riddle about HELLO.
        hint = "Redis requires a password, and the URL gives none (:password@ before the host)"
        text = f"{hint}: {text}"
    if root is not exc:
        detail = os.strerror(root.errno) if isinstance(root, OSError) and root.errno else str(root)
        text = f"{text}: {detail or type(root).__name__}"
    return text
