"""One WebSocket connection once open (RFC 6455 sections 5 to 7), sans-IO.

``receive_data(bytes)`` parses what the peer sent and returns what it meant, in
order: each complete message (``str`` for text, ``bytes`` for binary) and the
control events :class:`Ping`, :class:`Pong`, :class:`Close` (the peer's close
frame, or the TCP connection ending without one) and :class:`Failure` (this side
failed the connection on a protocol error or an oversized message). The answers
the protocol owes by itself (a pong for a ping, the echo of the peer's close frame,
the close frame of a failure) wait in :meth:`data_to_send`. The caller writes every
byte; nothing here does I/O, so it is tested by feeding it bytes.

Both roles: a server expects masked frames and sends unmasked ones, a client the
reverse. Limits are enforced from the frame header, before any payload is
buffered: a data frame that would take the message past ``max_message_size``
fails the connection with 1009 at once, so a header announcing 2^62 bytes costs
nothing. Text is validated as UTF-8 as it arrives, fragment by fragment.

The events are in ``events``; the sending half (``send_*``, ``data_to_send``) is the
:class:`~wsroute._wire.sender.Sender` mixin's.

States: ``OPEN``; ``CLOSING`` once this side sent a close frame (messages are still
read until the peer answers); ``CLOSED`` once the closing handshake is done, the
connection failed, or the peer vanished: nothing more is parsed or may be sent.
"""

from __future__ import annotations

import codecs
import zlib
from typing import Final

from . import closes
from .closes import ABNORMAL, too_big
from .deflate import Codec, TooBig
from .events import Close, Event, Failure, Ping, Pong, State
from .frames import (
    FIN,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    ProtocolViolation,
    close_payload,
    mask,
    parse_close,
)
from .sender import Sender

_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED
#: FIN and the text opcode, no RSV bit: the first byte of a whole text message.
_FIN_TEXT: Final = FIN | OP_TEXT
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class Protocol(Sender):
    """The state of one open WebSocket connection, for either role.

    Args:
        client: the client's side (masked frames out, unmasked in).
        max_message_size: the largest message taken from the peer, in bytes (UTF-8
            for text), fragments included.
        codec: permessage-deflate, when it was negotiated: the peer may then set
            RSV1 on the first frame of a message to say it is compressed (no other
            RSV bit, and not on other frames, RFC 7692 section 6), and messages sent
            with ``send_text``/``send_binary`` are compressed above its threshold.
    """

    __slots__ = (  # besides Sender's
        "_buffer",
        "_client",
        "_codec",
        "_compressed",
        "_decoder",
        "_max",
        "_need",
        "_opcode",
        "_parts",
        "_size",
        "failed",
    )

    def __init__(
        self, *, client: bool = False, max_message_size: int, codec: Codec | None = None
    ) -> None:
        self._client = client
        self._max = max_message_size
        self._codec = codec
        self._compressed = False  # the message being read is compressed
        self.state = _OPEN
        self._buffer = bytearray()  # the start of a frame not yet whole ...
        self._need = 0  # ... and how long it must grow before it is worth parsing
        self._out: list[bytes] = []
        # A fragmented message being read: its opcode, parts, size, UTF-8 decoder.
        self._opcode: int | None = None
        self._parts: list[bytes] | list[str] = []
        self._size = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        #: The close code and reason once closing: the peer's, or this side's.
        self.close_code: int | None = None
        self.close_reason = ""
        #: This side failed the connection (protocol error, invalid data, too big).
        self.failed = False

    @property
    def codec(self) -> Codec | None:
        """permessage-deflate on this connection, if it was negotiated."""
        return self._codec

    # -- receiving -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse ``data``, which follows what came before; return what it completes."""
        if self.state is _CLOSED:
            return []
        buffer = self._buffer
        if buffer:
            # The rest of a frame begun earlier: gather it without parsing again
            # until it is whole (a big message comes in many reads).
            buffer += data
            if len(buffer) < self._need:
                return []
            data = bytes(buffer)
            self._buffer = bytearray()
        events: list[Event] = []
        end = len(data)
        pos = 0
        client = self._client
        while end - pos >= 2:
            first = data[pos]
            second = data[pos + 1]
            # The common frame first: a whole masked text message under 126 bytes,
            # with no fragmented message in progress.
            if first == _FIN_TEXT and 0x80 <= second < 0xFE and not client:
                length = second & 0x7F
                start = pos + 6
                stop = start + length
                if stop > end or self._opcode is not None:
                    pass  # not whole yet, or a protocol error: the general path says
                elif length > self._max:
                    self._fail(events, *too_big(self._max))
                    return events
                else:
                    try:
                        events.append(mask(data[start:stop], data[pos + 2 : start]).decode())
                    except UnicodeDecodeError:
                        self._fail(events, *closes.INVALID_UTF8)
                        return events
                    pos = stop
                    continue
            stop = self._frame(data, pos, end, events)
            if stop < 0:
                return events  # failed or closed: nothing more is read
            if stop == pos:
                break  # not whole yet
            pos = stop
        if pos < end:
            self._buffer = bytearray(data[pos:])
            if end - pos < 2:
                self._need = 2
        return events

    def receive_eof(self) -> list[Event]:
        """The peer closed the TCP connection."""
        if self.state is _CLOSED:
            return []
        self.state = _CLOSED
        self._buffer = bytearray()
        if self.close_code is None:
            self.close_code = ABNORMAL
        return [Close(ABNORMAL, "")]

    def _frame(self, data: bytes, pos: int, end: int, events: list[Event]) -> int:
        """Read the frame at ``pos``: return where the next one starts, ``pos`` when
        this one is not whole yet, or -1 when the connection is over."""
        first = data[pos]
        second = data[pos + 1]
        opcode = first & 0x0F
        fin = first & FIN
        rsv = first & 0x70
        if rsv and (rsv != RSV1 or self._codec is None or not OP_TEXT <= opcode <= OP_BINARY):
            return self._fail(events, *closes.RESERVED_BITS)
        if bool(second & 0x80) == self._client:
            return self._fail(
                events, *(closes.MASKED_FROM_SERVER if self._client else closes.UNMASKED)
            )
        length = second & 0x7F
        head = 2
        if length == 126:
            if end - pos < 4:
                self._need = 4
                return pos
            length = (data[pos + 2] << 8) | data[pos + 3]
            head = 4
            if length < 126:
                return self._fail(events, *closes.LONG_LENGTH)
        elif length == 127:
            if end - pos < 10:
                self._need = 10
                return pos
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            head = 10
            if length < 65536 or length >> 63:
                return self._fail(events, *closes.LONG_LENGTH)
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                return self._fail(events, *closes.reserved_opcode(opcode))
            if not fin:
                return self._fail(events, *closes.FRAGMENTED_CONTROL)
            if length > MAX_CONTROL_PAYLOAD:
                return self._fail(events, *closes.LONG_CONTROL)
        elif opcode > OP_BINARY:
            return self._fail(events, *closes.reserved_opcode(opcode))
        elif opcode == OP_CONTINUATION:
            if self._opcode is None:
                return self._fail(events, *closes.NOTHING_TO_CONTINUE)
            if self._size + length > self._max:
                return self._too_big(events)
        else:
            if self._opcode is not None:
                return self._fail(events, *closes.MESSAGE_IN_MESSAGE)
            if length > self._max:
                return self._too_big(events)
        start = pos + head + (0 if self._client else 4)
        stop = start + length
        if stop > end:
            self._need = stop - pos  # checked from the header: the payload may come
            return pos
        payload = (
            data[start:stop] if self._client else mask(data[start:stop], data[start - 4 : start])
        )
        if opcode >= OP_CLOSE:
            return stop if self._control(opcode, bytes(payload), events) else -1
        if opcode == OP_CONTINUATION:
            if self._compressed:
                inflated = self._inflate(payload, self._max - self._size, bool(fin), events)
                if inflated is None:
                    return -1
                payload = inflated
            return stop if self._continue(payload, bool(fin), events) else -1
        if rsv:
            inflated = self._inflate(payload, self._max, bool(fin), events)
            if inflated is None:
                return -1
            payload = inflated
            self._compressed = not fin
        if fin:
            if opcode == OP_TEXT:
                try:
                    events.append(bytes(payload).decode())
                except UnicodeDecodeError:
                    return self._fail(events, *closes.INVALID_UTF8)
            else:
                events.append(bytes(payload))
            return stop
        self._opcode = opcode
        self._size = len(payload)
        if opcode == OP_TEXT:
            self._decoder = decoder = _utf8_decoder()
            try:
                self._parts = [decoder.decode(payload)]
            except UnicodeDecodeError:
                return self._fail(events, *closes.INVALID_UTF8)
        else:
            self._parts = [bytes(payload)]
        return stop

    def _continue(self, payload: bytes, fin: bool, events: list[Event]) -> bool:
        self._size += len(payload)
        decoder = self._decoder
        if decoder is not None:
            try:
                self._parts.append(decoder.decode(payload, fin))  # type: ignore[arg-type]
            except UnicodeDecodeError:
                self._fail(events, *closes.INVALID_UTF8)
                return False
        else:
            self._parts.append(bytes(payload))  # type: ignore[arg-type]
        if fin:
            parts = self._parts
            events.append("".join(parts) if decoder is not None else b"".join(parts))  # type: ignore[arg-type]
            self._opcode = self._decoder = None
            self._parts = []
            self._size = 0
            self._compressed = False
        return True

    def _inflate(self, payload: bytes, limit: int, fin: bool, events: list[Event]) -> bytes | None:
        """A compressed frame's payload, inflated; None once the connection failed
        (past the size limit: 1009; not deflate: 1007)."""
        assert self._codec is not None
        try:
            return self._codec.inflate(bytes(payload), limit, fin)
        except TooBig:
            self._too_big(events)
        except zlib.error:
            self._fail(events, *closes.INVALID_COMPRESSED)
        return None

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> bool:
        """A ping, pong or close frame; False once the connection is over."""
        if opcode == OP_PING:
            if self.state is _OPEN:
                self._out.append(self._encode(OP_PONG, payload))
            events.append(Ping(payload))
            return True
        if opcode == OP_PONG:
            events.append(Pong(payload))
            return True
        try:
            code, reason = parse_close(payload)
        except ProtocolViolation as violation:
            self._fail(events, violation.code, violation.reason)
            return False
        if self.state is _OPEN:
            # Echo it, as most endpoints do; without a code, an empty close frame.
            self._out.append(self._encode(OP_CLOSE, payload))
            self.close_code, self.close_reason = code, reason
        self.state = _CLOSED
        self._buffer = bytearray()
        events.append(Close(code, reason))
        return False

    def _too_big(self, events: list[Event]) -> int:
        return self._fail(events, *too_big(self._max))

    def _fail(self, events: list[Event], code: int, reason: str) -> int:
        """Fail the connection (RFC 6455 section 7.1.7): say why in a close frame,
        unless one was sent already, and read no more."""
        if self.state is _OPEN:
            self._out.append(self._encode(OP_CLOSE, close_payload(code, reason)))
            self.close_code, self.close_reason = code, reason
        self.state = _CLOSED
        self.failed = True
        self._buffer = bytearray()
        self._parts = []
        if self._codec is not None:
            self._codec.reset()
        events.append(Failure(code, reason))
        return -1
