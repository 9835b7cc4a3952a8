"""What an open WebSocket connection's protocol reports, and the states it goes through.

:class:`~wsroute._wire.protocol.Protocol` returns these from ``receive_data`` and
``receive_eof``: each complete message as ``str`` (text) or ``bytes`` (binary), and
the control events below. Apart from the parser, so that ``protocol`` holds the state
machine alone; its readers (the server's transport, the test kit's client) import
what they match on from here.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # this side sent its close frame and waits for the peer's
    CLOSED = "closed"


class Ping(NamedTuple):
    payload: bytes


class Pong(NamedTuple):
    payload: bytes


class Close(NamedTuple):
    """The peer closed: its close frame (1005 when it had no code), or the TCP
    connection ending without one (1006)."""

    code: int
    reason: str


class Failure(NamedTuple):
    """This side failed the connection: 1002 (protocol error), 1007 (invalid UTF-8)
    or 1009 (message too big). The close frame saying so is in ``data_to_send``."""

    code: int
    reason: str


Event = str | bytes | Ping | Pong | Close | Failure
