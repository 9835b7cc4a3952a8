"""Every close code wsroute sends or reports, and the reason sent with it: one place,
as the table in docs/protocol.md lists them.

A close is a ``(code, reason)`` pair: ``conn._request_close(*SLOW_CONSUMER, ...)``.
The codes are RFC 6455 section 7.4's and the IANA registry's; 3000-4999 belong to
applications.
"""

from __future__ import annotations

from typing import Final

NORMAL: Final = 1000
GOING_AWAY: Final = 1001
PROTOCOL_ERROR: Final = 1002
UNSUPPORTED_DATA: Final = 1003
#: Reported for a close frame without a code; never sent.
NO_STATUS: Final = 1005
#: Reported when the connection ended without a close frame; never sent.
ABNORMAL: Final = 1006
INVALID_DATA: Final = 1007
POLICY_VIOLATION: Final = 1008
MESSAGE_TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011
SERVICE_RESTART: Final = 1012
TRY_AGAIN_LATER: Final = 1013

#: Codes an endpoint may send, besides 3000-4999. 1005, 1006 and 1015 only report
#: what happened; 1004 is reserved.
_SENDABLE: Final = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
#: Codes accepted in a peer's close frame: the same less 1014, which the Autobahn
#: testsuite (case 7.9.x, older than the code's registration) wants refused.
_RECEIVABLE: Final = _SENDABLE - {1014}

# -- why the server closes ------------------------------------------------------------

SHUTTING_DOWN: Final = (GOING_AWAY, "server shutting down")
#: A shutdown after which the server comes back (``wsroute run --reload``).
RESTARTING: Final = (SERVICE_RESTART, "server restarting")
BINARY_UNSUPPORTED: Final = (UNSUPPORTED_DATA, "binary frames are not supported")
TEXT_UNSUPPORTED: Final = (UNSUPPORTED_DATA, "text frames are not supported with msgpack")
SLOW_CONSUMER: Final = (POLICY_VIOLATION, "slow consumer")
RATE_LIMIT_EXCEEDED: Final = (POLICY_VIOLATION, "rate limit exceeded")
TOO_MANY_INVALID: Final = (POLICY_VIOLATION, "too many invalid messages")
INTERNAL: Final = (INTERNAL_ERROR, "internal error")
PING_TIMEOUT: Final = (INTERNAL_ERROR, "ping timeout")
BROKER_UNAVAILABLE: Final = (TRY_AGAIN_LATER, "broker unavailable")
OVERLOADED: Final = (TRY_AGAIN_LATER, "overloaded")

# -- why the protocol fails a connection (RFC 6455 section 7.1.7) ---------------------

RESERVED_BITS: Final = (PROTOCOL_ERROR, "reserved bits set")
UNMASKED: Final = (PROTOCOL_ERROR, "an unmasked frame")
MASKED_FROM_SERVER: Final = (PROTOCOL_ERROR, "a masked frame from the server")
LONG_LENGTH: Final = (PROTOCOL_ERROR, "a length not in its shortest form")
FRAGMENTED_CONTROL: Final = (PROTOCOL_ERROR, "a fragmented control frame")
LONG_CONTROL: Final = (PROTOCOL_ERROR, "a control frame over 125 bytes")
NOTHING_TO_CONTINUE: Final = (PROTOCOL_ERROR, "a continuation with nothing to continue")
MESSAGE_IN_MESSAGE: Final = (PROTOCOL_ERROR, "a new message inside a fragmented one")
ONE_BYTE_CLOSE: Final = (PROTOCOL_ERROR, "close frame with a one-byte payload")
INVALID_UTF8: Final = (INVALID_DATA, "invalid UTF-8 in a text message")
INVALID_UTF8_REASON: Final = (INVALID_DATA, "close reason is not valid UTF-8")
INVALID_COMPRESSED: Final = (INVALID_DATA, "invalid compressed data")


def reserved_opcode(opcode: int) -> tuple[int, str]:
    return PROTOCOL_ERROR, f"reserved opcode {opcode:#x}"


def invalid_close_code(code: int) -> tuple[int, str]:
    return PROTOCOL_ERROR, f"invalid close code {code}"


def too_big(limit: int) -> tuple[int, str]:
    """A message over ``max_message_size``."""
    return MESSAGE_TOO_BIG, f"Exceeded maximum message size: {limit} bytes"


def is_sendable(code: int) -> bool:
    """Whether ``code`` may be sent in a close frame."""
    return code in _SENDABLE or 3000 <= code <= 4999


def is_receivable(code: int) -> bool:
    """Whether a close frame from the peer may carry ``code``."""
    return code in _RECEIVABLE or 3000 <= code <= 4999
