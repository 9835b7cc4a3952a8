"""The sending half of an open WebSocket connection's protocol, sans-IO: frames out.

``send_text``, ``send_binary``, ``send_ping`` and ``send_pong`` return the frame to
write (compressed above the codec's threshold, masked on the client's side);
``send_close`` starts the closing handshake. ``data_to_send`` returns the frames the
protocol owes by itself (pongs, the echo of a close frame, a failure's close frame),
which the receiving half queues.

:class:`Sender` is a mixin of :class:`~wsroute._wire.protocol.Protocol` rather than
an object of its own, so that a connection's protocol stays one object, with no
indirection on the hot path of every message; ``Protocol.__init__`` sets the state
it uses.
"""

from __future__ import annotations

import os
from typing import Final

from .deflate import Codec
from .events import State
from .frames import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RSV1, close_payload, encode

_OPEN: Final = State.OPEN


class StateError(Exception):
    """A frame was to be sent in a state that forbids it (a bug in the caller)."""


class Sender:
    """Frames out, and the start of the closing handshake."""

    # What sending changes (Protocol.__init__ sets them; receiving changes them too).
    __slots__ = ("_out", "close_code", "close_reason", "state")

    # Set by Protocol.__init__; listed here for the type checker.
    _client: bool
    _codec: Codec | None
    _out: list[bytes]
    close_code: int | None
    close_reason: str
    state: State

    def data_to_send(self) -> bytes:
        """The frames the protocol owes by itself (pongs, close frames), once."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _encode(self, opcode: int, payload: bytes) -> bytes:
        return encode(opcode, payload, key=os.urandom(4) if self._client else None)

    def _check_open(self, what: str) -> None:
        if self.state is not _OPEN:
            raise StateError(f"cannot send {what} in state {self.state.value}")

    def send_text(self, text: str | bytes) -> bytes:
        """A text message's frame (``bytes`` must be UTF-8).

        Raises:
            StateError: the connection is not open.
        """
        self._check_open("a message")
        return self._message(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data: bytes) -> bytes:
        self._check_open("a message")
        return self._message(OP_BINARY, data)

    def _message(self, opcode: int, data: bytes) -> bytes:
        codec = self._codec
        if codec is None or len(data) < codec.threshold:
            return self._encode(opcode, data)
        return encode(
            opcode,
            codec.compress(data),
            rsv=RSV1,
            key=os.urandom(4) if self._client else None,
        )

    def send_ping(self, payload: bytes = b"") -> bytes:
        self._check_open("a ping")
        return self._encode(OP_PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        self._check_open("a pong")
        return self._encode(OP_PONG, payload)

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start the closing handshake: this side's close frame. Messages are still
        read until the peer's close frame comes (``Close``).

        Raises:
            StateError: a close frame was sent or received already.
            ValueError: the code may not be sent, or the reason is too long.
        """
        self._check_open("a close frame")
        frame = self._encode(OP_CLOSE, close_payload(code, reason))
        self.state = State.CLOSING
        self.close_code, self.close_reason = code, reason
        return frame
