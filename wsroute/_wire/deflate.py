"""permessage-deflate (RFC 7692), sans-IO: its options and per-message compression.

:class:`Deflate` is what an app allows, :class:`Settings` what was agreed for one
connection (``deflate_negotiation`` agrees on them); a :class:`Codec` compresses and
decompresses one connection's messages (the ``Protocol`` calls it; ``framing``
frames the server's outgoing messages with it).

Memory is what compression costs most. Without context takeover on the server's
side (the default), a message is compressed by a compressor shared by every
connection with the same settings, emptied after each message (a full flush), so a
connection holds no compressor and a broadcast is compressed once for all of them.
Without context takeover on the client's side (also the default), a connection
holds a decompressor only while a compressed message is being read. With context
takeover, each connection keeps its own (see docs/limits.md for the sizes).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

from .frames import RSV1, header

NAME: Final = "permessage-deflate"
#: What RFC 7692 removes from the end of each compressed message and the receiver
#: adds back: the empty stored block a sync or full flush ends with.
TAIL: Final = b"\x00\x00\xff\xff"
#: zlib compresses with a window of at least 2**9 bytes (it refuses 8 for raw
#: deflate), so an offer limiting the server to 8 bits is declined.
MIN_SERVER_WINDOW_BITS: Final = 9
MIN_WINDOW_BITS: Final = 8
MAX_WINDOW_BITS: Final = 15


class _Compressor(Protocol):
    """What ``zlib.compressobj`` returns (its class is private to zlib)."""

    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self, mode: int = ..., /) -> bytes: ...


class _Decompressor(Protocol):
    """What ``zlib.decompressobj`` returns."""

    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, /, max_length: int = ...) -> bytes: ...


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"Deflate option {name} must be an integer {low}-{high}, not {value!r}")


@dataclass(frozen=True, slots=True)
class Deflate:
    """What the app allows of permessage-deflate: ``App(compression=Deflate(...))``.

    Args:
        threshold: messages shorter than this many bytes are sent uncompressed: on
            its own (without context takeover) a short JSON message shrinks by a
            fifth at most, for about as much CPU as the rest of its request.
        level: zlib's compression level, 1 (fastest, the default) to 9 (smallest):
            level 6 saves another tenth of the bytes for half again the CPU.
        memory_level: zlib's ``memLevel``, 1 to 9: a compressor takes about
            ``2 ** (memory_level + 9)`` bytes besides its window.
        server_context_takeover: keep the compressor's history from one message to
            the next: far better ratios on small, similar messages, at the cost of a
            compressor per connection (about 2 ** (server_max_window_bits + 2) +
            2 ** (memory_level + 9) bytes) and of compressing every broadcast once
            per connection rather than once.
        client_context_takeover: let clients keep their history: better ratios for
            what clients send, at the cost of a decompressor per connection (about
            2 ** client_max_window_bits + 7 KiB) once it sent a compressed message.
        server_max_window_bits: the server's window, 9 to 15 (2 ** bits bytes).
        client_max_window_bits: the most a client's window may be, 8 to 15; below 15,
            offers that cannot be limited (no ``client_max_window_bits``) are declined.
    """

    threshold: int = 1024
    level: int = 1
    memory_level: int = 8
    server_context_takeover: bool = False
    client_context_takeover: bool = False
    server_max_window_bits: int = MAX_WINDOW_BITS
    client_max_window_bits: int = MAX_WINDOW_BITS
    # Compressors without context takeover, shared by every connection (see Codec).
    _shared: dict[int, _Compressor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _check_int("threshold", self.threshold, 0, 2**63)
        _check_int("level", self.level, 1, 9)
        _check_int("memory_level", self.memory_level, 1, 9)
        _check_int(
            "server_max_window_bits",
            self.server_max_window_bits,
            MIN_SERVER_WINDOW_BITS,
            MAX_WINDOW_BITS,
        )
        _check_int(
            "client_max_window_bits", self.client_max_window_bits, MIN_WINDOW_BITS, MAX_WINDOW_BITS
        )
        for name in ("server_context_takeover", "client_context_takeover"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Deflate option {name} must be True or False")

    def _shared_compressor(self, bits: int) -> _Compressor:
        """The compressor every connection without context takeover uses for a
        window of ``bits``: only ever used between two full flushes."""
        compressor = self._shared.get(bits)
        if compressor is None:
            compressor = self._shared[bits] = zlib.compressobj(
                self.level, zlib.DEFLATED, -bits, self.memory_level
            )
        return compressor


class Settings(NamedTuple):
    """What was agreed for one connection."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int  # what the server compresses with
    client_max_window_bits: int  # the most the client compresses with

    def header(self, *, server_bits_offered: bool, client_bits_offered: bool) -> str:
        """The ``Sec-WebSocket-Extensions`` value that says so."""
        parts = [NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        # Only when offered: RFC 7692 allows it otherwise, but Firefox fails the
        # connection, and a smaller window than 15 needs no telling to decompress.
        if server_bits_offered:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if client_bits_offered and self.client_max_window_bits < MAX_WINDOW_BITS:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


class TooBig(Exception):
    """A compressed message inflates past the limit."""


class Codec:
    """One connection's compression, for either role.

    ``inflate`` takes a compressed message's frames in order and returns what they
    decompress to, never more than the limit given plus one byte: a small frame that
    would inflate to gigabytes costs no more memory than a message may take.
    """

    __slots__ = (
        "_compressor",
        "_deflate_bits",
        "_inflate_bits",
        "_inflater",
        "_keep_inflater",
        "_shared",
        "allowed",
        "header",
        "settings",
        "shared_key",
        "threshold",
    )

    def __init__(
        self, allowed: Deflate, settings: Settings, header: str, *, client: bool = False
    ) -> None:
        self.allowed = allowed
        self.settings = settings
        #: The ``Sec-WebSocket-Extensions`` value agreed on (``conn.compression``).
        self.header = header
        self.threshold = allowed.threshold
        s = settings
        if client:
            own_bits, own_reset = s.client_max_window_bits, s.client_no_context_takeover
            peer_bits, peer_reset = s.server_max_window_bits, s.server_no_context_takeover
        else:
            own_bits, own_reset = s.server_max_window_bits, s.server_no_context_takeover
            peer_bits, peer_reset = s.client_max_window_bits, s.client_no_context_takeover
        self._deflate_bits = max(own_bits, MIN_SERVER_WINDOW_BITS)
        #: Compressing without context takeover uses the app's shared compressor.
        self._shared = own_reset
        #: What every connection compressing the same way shares, so that a message
        #: compressed for one can be sent as is to the others; None with context
        #: takeover (each connection's output depends on its history).
        self.shared_key: object = (
            (id(allowed), self._deflate_bits, self.threshold) if own_reset else None
        )
        self._compressor: _Compressor | None = None
        self._inflate_bits = peer_bits
        self._keep_inflater = not peer_reset
        self._inflater: _Decompressor | None = None

    # -- compressing -----------------------------------------------------------------

    def compress(self, data: bytes) -> bytes:
        """``data`` compressed as one message, without the trailing empty block."""
        if self._shared:
            shared = self.allowed._shared_compressor(self._deflate_bits)
            out = shared.compress(data) + shared.flush(zlib.Z_FULL_FLUSH)
        else:
            own = self._compressor
            if own is None:
                allowed = self.allowed
                own = self._compressor = zlib.compressobj(
                    allowed.level, zlib.DEFLATED, -self._deflate_bits, allowed.memory_level
                )
            out = own.compress(data) + own.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(TAIL) else out

    def frame(self, opcode: int, payload: bytes) -> bytes:
        """A server's (unmasked) frame of one message, compressed if long enough."""
        if len(payload) < self.threshold:
            return header(opcode, len(payload)) + payload
        compressed = self.compress(payload)
        return header(opcode, len(compressed), rsv=RSV1) + compressed

    # -- decompressing ---------------------------------------------------------------

    def inflate(self, data: bytes, limit: int, fin: bool) -> bytes:
        """The next part of a compressed message; ``fin``: its last frame.

        Raises:
            TooBig: the message inflates past ``limit`` bytes (counting from this part).
            zlib.error: the data is not valid deflate.
        """
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(-self._inflate_bits)
        if fin:
            data += TAIL
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit:
            self._inflater = None  # the connection fails: drop the window now
            raise TooBig
        if fin:
            if inflater.eof:
                # A final block ended the stream: only the tail may follow it, and the
                # next message starts a new one.
                if inflater.unused_data not in (b"", TAIL):
                    self._inflater = None
                    raise zlib.error("data after the final deflate block")
                self._inflater = None
            elif not self._keep_inflater:
                self._inflater = None
        return out

    def reset(self) -> None:
        """Drop what the connection held (it failed or closed)."""
        self._inflater = None
        self._compressor = None
