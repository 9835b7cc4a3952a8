"""A hand-driven WebSocket client on a raw TCP stream, for real-socket tests.

It sends what a well-behaved client never would (reserved opcodes, RSV bits,
invalid UTF-8, unmasked or oversized frames, a trickled handshake) and reports
exactly what the server answered: the HTTP status of a refused upgrade, the close
code of the close frame, or that the TCP connection was dropped without one.
Frames are built by hand; wsproto only parses what the server sends. Every wait has
a timeout.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, NamedTuple

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

TIMEOUT = 5.0

# Opcodes (RFC 6455 section 5.2).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    long_form: bool = False,
) -> bytes:
    """One frame exactly as given: ``rsv`` is the 3 RSV bits (RSV1 = 0b100);
    ``long_form`` gives a length under 126 in the 16-bit form (not the shortest:
    a protocol error)."""
    size = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    masked = 0x80 if mask else 0
    if size < 126 and not long_form:
        header = struct.pack("!BB", first, masked | size)
    elif size < 2**16:
        header = struct.pack("!BBH", first, masked | 126, size)
    else:
        header = struct.pack("!BBQ", first, masked | 127, size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    stream = (key * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")
    return header + key + body


def upgrade_request(
    target: str = "/", headers: list[tuple[str, str]] | None = None, *, host: str = "127.0.0.1"
) -> bytes:
    """A valid opening handshake, with ``headers`` added."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class HTTPAnswer(NamedTuple):
    """What the server sent back to a request it refused, up to the end of the stream."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    reset: bool  # the stream ended with a TCP reset instead of a clean close


async def read_to_end(
    stream: trio.abc.ReceiveStream, timeout: float = TIMEOUT
) -> tuple[bytes, bool]:
    """Everything until the server closes: (data, whether it ended with a reset)."""
    data = b""
    with trio.fail_after(timeout):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return data, True
            if not chunk:
                return data, False
            data += chunk


def parse_http(data: bytes, reset: bool) -> HTTPAnswer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        return HTTPAnswer(None, {}, data, reset)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HTTPAnswer(int(lines[0].split()[1]), headers, body, reset)


async def http_exchange(port: int, request: bytes, timeout: float = TIMEOUT) -> HTTPAnswer:
    """Send ``request`` (while reading, so a large one cannot deadlock) and read the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:

        async def send() -> None:
            # The server may answer and close before reading all of a large request.
            with suppress(trio.BrokenResourceError):
                await stream.send_all(request)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            data, reset = await read_to_end(stream, timeout)
            nursery.cancel_scope.cancel()
    return parse_http(data, reset)


class Closed(NamedTuple):
    """How the server ended the connection."""

    code: int | None  # the close frame's code; None if it sent no close frame
    reason: str
    frames: list[Event]  # data frames, pings and pongs that came before the end


class RawWS:
    """An open WebSocket connection whose frames the test writes byte by byte."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self._events: list[Event] = []
        self._parts: list[str | bytes] = []
        self.eof = False
        #: The extensions the server accepted.
        self.extensions: list[str] = []
        #: Bytes read from the socket so far (frames as sent, compressed or not).
        self.received = 0

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_frame(self, opcode: int, payload: bytes = b"", **options: Any) -> None:
        await self.send(frame(opcode, payload, **options))

    async def send_text(self, text: str) -> None:
        await self.send_frame(TEXT, text.encode())

    async def send_json(self, message: Any) -> None:
        await self.send_text(orjson.dumps(message).decode())

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""  # a reset: the server dropped us
        if not data:
            self.eof = True
            return
        self.received += len(data)
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._parts.append(event.data)
                if not event.message_finished:
                    continue
                if isinstance(event, TextMessage):
                    event = TextMessage(data="".join(self._parts))  # type: ignore[arg-type]
                else:
                    event = BytesMessage(data=b"".join(self._parts))  # type: ignore[arg-type]
                self._parts = []
            self._events.append(event)

    async def event(self, timeout: float = TIMEOUT) -> Event | None:
        """The next complete message, ping, pong or close; None once the stream ended."""
        with trio.fail_after(timeout):
            while not self._events:
                if self.eof:
                    return None
                await self._fill()
        return self._events.pop(0)

    async def recv_json(self, timeout: float = TIMEOUT) -> Any:
        """The next message, decoded from JSON; pings and pongs are skipped."""
        while True:
            event = await self.event(timeout)
            if isinstance(event, TextMessage):
                return orjson.loads(event.data)
            if not isinstance(event, Ping | Pong):
                raise AssertionError(f"expected a text message, got {event!r}")

    async def closed(self, timeout: float = TIMEOUT) -> Closed:
        """Read until the server ends the connection (close frame, or EOF without one)."""
        frames: list[Event] = []
        with trio.fail_after(timeout):
            while True:
                event = await self.event(timeout)
                if event is None:
                    return Closed(None, "", frames)
                if isinstance(event, CloseConnection):
                    return Closed(event.code, event.reason or "", frames)
                frames.append(event)

    async def answer_close(self, code: int = 1000) -> None:
        """Echo the close frame, as a client does when the server closes gracefully."""
        await self.send_frame(CLOSE, code.to_bytes(2, "big"))

    async def dropped(self, timeout: float = TIMEOUT) -> None:
        """Wait until the server has closed the TCP connection."""
        with trio.fail_after(timeout):
            while not self.eof:
                self._events.clear()
                await self._fill()


async def _connect(port: int, rcvbuf: int | None) -> trio.SocketStream:
    if rcvbuf is None:
        return await trio.open_tcp_stream("127.0.0.1", port)
    sock = trio.socket.socket()
    try:
        # Before connecting, so that the window the client advertises is small too.
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


@asynccontextmanager
async def open_raw(
    port: int,
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    *,
    rcvbuf: int | None = None,
    deflate: bool = False,
) -> AsyncIterator[RawWS]:
    """A raw connection that has completed the opening handshake.

    ``rcvbuf`` sets the socket's receive buffer, for a client that stops reading and
    should make the server's writes block early. ``deflate`` offers permessage-deflate
    (wsproto's): what the server sends compressed is read back; what the test sends
    it compresses itself (``RSV1`` is ``rsv=0b100``).
    """
    stream = await _connect(port, rcvbuf)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        extra = [(name.encode(), value.encode()) for name, value in headers or []]
        await stream.send_all(
            ws.send(
                Request(
                    host="127.0.0.1",
                    target=target,
                    extra_headers=extra,
                    extensions=[PerMessageDeflate()] if deflate else [],
                )
            )
        )
        accepted: list[AcceptConnection] = []
        with trio.fail_after(TIMEOUT):
            while not accepted:
                data = await stream.receive_some(65536)
                if not data:
                    raise AssertionError("the server closed during the handshake")
                ws.receive_data(data)
                accepted = [e for e in ws.events() if isinstance(e, AcceptConnection)]
        raw = RawWS(stream, ws)
        raw.extensions = [extension.name for extension in accepted[0].extensions]
        yield raw
