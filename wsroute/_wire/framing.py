"""How one server connection puts outgoing messages into frames: in which encoding
(the JSON text every message is made as, or another the subprotocol chose) and
whether compressed (permessage-deflate).

A plain JSON connection frames with ``frames.server_frame`` and nothing here costs
it anything. Otherwise ``framer`` builds a :class:`Framer` for the connection. A
``Prepared`` message (a broadcast, a reply) is re-encoded, and compressed, once per
way of doing it, not once per connection: the result is kept in the message's
``cache`` under a key naming the encoding and the compressor, and every connection
with the same key sends those bytes as they are. A connection whose compressor keeps
context from one message to the next has its own output, which is not shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .deflate import Codec
from .frames import OP_BINARY, OP_TEXT, Outgoing, Prepared, header, server_frame


class Encoding(NamedTuple):
    """An encoding of messages other than JSON text, from the JSON each is made as.

    ``encode`` encodes a ``Prepared`` message (from its ``value`` when it has one,
    else from its JSON ``payload``). Frames the app sends itself (``str`` or
    ``bytes``, ``conn.send_frame``) bypass the protocol and go as they are.
    """

    name: str
    opcode: int
    encode: Callable[[Prepared], bytes]


def framer(encoding: Encoding | None, codec: Codec | None) -> Callable[[Outgoing], bytes]:
    """The function that frames one connection's outgoing messages."""
    if encoding is None and codec is None:
        return server_frame
    return Framer(encoding, codec)


class Framer:
    """Frames a connection's messages in its encoding, compressed by its codec."""

    __slots__ = ("_codec", "_encoding", "_opcode", "_shared_key")

    def __init__(self, encoding: Encoding | None, codec: Codec | None) -> None:
        self._encoding = encoding
        self._codec = codec
        self._opcode = OP_TEXT if encoding is None else encoding.opcode
        name = None if encoding is None else encoding.name
        if codec is None:
            self._shared_key: object = name
        elif codec.shared_key is not None:
            self._shared_key = (name, codec.shared_key)
        else:
            self._shared_key = None  # context takeover: this connection's own bytes

    def __call__(self, frame: Outgoing) -> bytes:
        if isinstance(frame, Prepared):
            return self._prepared(frame)
        if isinstance(frame, str):
            return self._frame(OP_TEXT, frame.encode())
        return self._frame(OP_BINARY, frame)

    def _prepared(self, frame: Prepared) -> bytes:
        key = self._shared_key
        cache = frame.cache
        if key is not None and cache is not None:
            wire = cache.get(key)
            if wire is not None:
                return wire
        wire = self._frame(self._opcode, self._payload(frame))
        if key is not None:
            if cache is None:
                cache = frame.cache = {}
            cache[key] = wire
        return wire

    def _payload(self, frame: Prepared) -> bytes:
        """The message in this connection's encoding, encoded once for all."""
        encoding = self._encoding
        if encoding is None:
            return frame.payload
        cache = frame.cache
        if cache is None:
            cache = frame.cache = {}
        key = ("payload", encoding.name)
        payload = cache.get(key)
        if payload is None:
            payload = cache[key] = encoding.encode(frame)
        return payload

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        codec = self._codec
        if codec is None:
            return header(opcode, len(payload)) + payload
        return codec.frame(opcode, payload)
