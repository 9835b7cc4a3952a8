"""The in-memory client's side of a WebSocket: wsroute's own sans-IO protocol
(``wsroute._wire``) in the client role, over any trio stream.

Why not trio-websocket's client: it answers a ping that arrives after its own close
frame by sending a pong wsproto refuses, and the exception kills its reader
(trio-websocket issue #184, unreleased fix). A server pings on its own schedule, so
a test that closes a client while a ping is in flight would fail at random. This
client answers pings only while open, as RFC 6455 allows, and is small: one reader
task, messages kept in arrival order.
"""

from __future__ import annotations

import base64
import os
from collections import deque
from collections.abc import Iterable
from contextlib import suppress

import trio

from .._wire.client_handshake import ResponseReader, client_request
from .._wire.deflate import NAME as DEFLATE
from .._wire.deflate import Codec, Deflate
from .._wire.deflate_negotiation import offer, parse_answer
from .._wire.events import Close, Failure, State
from .._wire.frames import ABNORMAL
from .._wire.headers import parse_extensions
from .._wire.protocol import Protocol
from ._messages import CloseInfo

READ_SIZE = 65536


class Rejected(Exception):
    """The server refused the upgrade."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body


class Closed(Exception):
    """The connection is closed: nothing more can be sent or received."""

    def __init__(self, close: CloseInfo) -> None:
        super().__init__(close)
        self.close = close


class ClientConnection:
    """An open client connection; ``run_reader`` must run in a task of its own."""

    def __init__(self, stream: trio.abc.Stream, protocol: Protocol, subprotocol: str | None):
        self._stream = stream
        self._protocol = protocol
        self._lock = trio.StrictFIFOLock()
        self._messages: deque[str | bytes] = deque()
        self._arrived = trio.Event()
        self._ended = trio.Event()  # the reader is done
        self.subprotocol = subprotocol
        #: The permessage-deflate the server agreed to, as its 101 says, or None.
        self.compression: str | None = None
        #: The close frame's code and reason, or 1006, once the connection is closed.
        self.closed: CloseInfo | None = None

    async def run_reader(self, rest: bytes) -> None:
        protocol = self._protocol
        data = rest
        try:
            while True:
                events = protocol.receive_data(data) if data else []
                for event in events:
                    if isinstance(event, str | bytes):
                        self._messages.append(event)
                    elif isinstance(event, Close | Failure):
                        self.closed = CloseInfo(event.code, event.reason)
                if events:
                    self._arrived.set()
                    self._arrived = trio.Event()
                out = protocol.data_to_send()
                if out:
                    await self._write(out)
                if protocol.state is State.CLOSED:
                    break
                try:
                    data = bytes(await self._stream.receive_some(READ_SIZE))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    for event in protocol.receive_eof():
                        assert isinstance(event, Close)
                        self.closed = self.closed or CloseInfo(event.code, event.reason)
                    break
        finally:
            if self.closed is None:
                self.closed = CloseInfo(ABNORMAL, "")
            self._ended.set()
            self._arrived.set()

    async def _write(self, data: bytes) -> None:
        async with self._lock:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.send_all(data)  # if it fails, the reader reports why

    async def send_message(self, message: str | bytes) -> None:
        """Raises:
        Closed: the connection is closing or closed."""
        protocol = self._protocol
        if protocol.state is not State.OPEN:
            raise Closed(self.closed or CloseInfo(ABNORMAL, ""))
        if isinstance(message, str):
            frame = protocol.send_text(message)
        else:
            frame = protocol.send_binary(message)
        await self._write(frame)

    async def get_message(self) -> str | bytes:
        """The next message, in arrival order.

        Raises:
            Closed: the connection closed and every message was read.
        """
        while not self._messages:
            if self._ended.is_set():
                raise Closed(self.closed or CloseInfo(ABNORMAL, ""))
            await self._arrived.wait()
        return self._messages.popleft()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (unless closing already) and wait for the server to end
        the connection."""
        if self._protocol.state is State.OPEN:
            await self._write(self._protocol.send_close(code, reason))
        await self._ended.wait()


async def connect(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    target: str,
    *,
    subprotocols: Iterable[str] = (),
    headers: Iterable[tuple[bytes, bytes]] = (),
    max_message_size: int = 2**31,
    compression: Deflate | None = None,
) -> ClientConnection:
    """Open a WebSocket on ``stream``; its reader runs in ``nursery``. With
    ``compression``, offer permessage-deflate as it says.

    Raises:
        Rejected: the server answered something other than 101.
        Closed: the server closed before answering.
        ValueError: the server's 101 breaks RFC 6455 or RFC 7692.
    """
    key = base64.b64encode(os.urandom(16))
    offered = list(subprotocols)
    request = client_request(
        host,
        target,
        key,
        subprotocols=offered,
        extensions=offer(compression) if compression is not None else None,
        headers=headers,
    )
    try:
        await stream.send_all(request)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise Closed(CloseInfo(ABNORMAL, "closed before answering the upgrade")) from None
    reader = ResponseReader(key, offered)
    while True:
        try:
            data = bytes(await stream.receive_some(READ_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        answer = reader.feed(data) if data else reader.feed_eof()
        if answer is not None:
            break
        if not data:
            raise Closed(CloseInfo(ABNORMAL, "closed before answering the upgrade"))
    if answer.status != 101:
        raise Rejected(answer.status, answer.headers, answer.body)
    chosen = answer.header(b"sec-websocket-protocol")
    codec = _client_codec(answer.header(b"sec-websocket-extensions"), compression)
    protocol = Protocol(client=True, max_message_size=max_message_size, codec=codec)
    connection = ClientConnection(stream, protocol, chosen.decode() if chosen else None)
    connection.compression = codec.header if codec is not None else None
    nursery.start_soon(connection.run_reader, reader.rest)
    return connection


def _client_codec(answer: bytes | None, offered: Deflate | None) -> Codec | None:
    """The codec a server's ``Sec-WebSocket-Extensions`` answer agrees on.

    Raises:
        ValueError: it names an extension that was not offered, or answers the offer
            with what RFC 7692 does not allow.
    """
    if answer is None:
        return None
    extensions = parse_extensions(answer)
    if offered is None or len(extensions) != 1 or extensions[0].name != DEFLATE:
        raise ValueError(f"the server chose extensions that were not offered: {answer!r}")
    settings = parse_answer(extensions[0].params, offered)
    return Codec(offered, settings, answer.decode("ascii"), client=True)
