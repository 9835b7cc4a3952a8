"""Test tools for wsroute apps: in-memory clients, pytest fixtures, broker conformance.

``open_client(app)`` runs the app's real connection code over in-memory streams, so
tests need no ports and follow trio's clock (``autojump_clock`` makes timeouts
instant). See docs/testing.md.
"""

from __future__ import annotations

from ._client import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._client import TestClient as TestClient
from ._client import open_app as open_app
from ._client import open_client as open_client
from ._conformance import broker_checks as broker_checks
from ._conformance import check_broker as check_broker
from ._frames import ClientClosed as ClientClosed
from ._frames import CloseInfo as CloseInfo
from ._frames import ErrorReply as ErrorReply
from ._frames import Event as Event
from ._frames import ExpectationFailed as ExpectationFailed
from ._frames import HandshakeRejected as HandshakeRejected
from ._frames import Reply as Reply
from ._frames import RequestError as RequestError

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
