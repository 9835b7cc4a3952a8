"""Test tools for wsroute apps: in-memory clients, pytest fixtures, broker conformance.

``open_client(app)`` runs the app's real connection code over in-memory streams, so
tests need no ports and follow trio's clock (``autojump_clock`` makes timeouts
instant). See docs/testing.md.
"""

from __future__ import annotations

from ._client import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._client import TestClient as TestClient
from ._conformance import broker_checks as broker_checks
from ._conformance import check_broker as check_broker
from ._messages import ClientClosed as ClientClosed
from ._messages import CloseInfo as CloseInfo
from ._messages import ErrorReply as ErrorReply
from ._messages import Event as Event
from ._messages import ExpectationFailed as ExpectationFailed
from ._messages import HandshakeRejected as HandshakeRejected
from ._messages import Reply as Reply
from ._messages import RequestError as RequestError
from ._open import open_app as open_app
from ._open import open_client as open_client

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientClosed",
    "CloseInfo",
    "ErrorReply",
    "Event",
    "ExpectationFailed",
    "HandshakeRejected",
    "Reply",
    "RequestError",
    "TestClient",
    "broker_checks",
    "check_broker",
    "open_app",
    "open_client",
]
