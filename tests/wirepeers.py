"""wsproto and the ``websockets`` library reading the bytes wsroute's wire layer reads.

The differential tests of ``tests/test_wire_protocol.py`` (and ``test_wire_frames``)
feed the same reads to ``wsroute._wire.protocol.Protocol`` and to a reference
implementation, and compare what each reports in one vocabulary: wsroute's own
events, ``str``/``bytes`` for whole messages, ``Ping``, ``Pong``, ``Close`` (the
peer's close) and ``Failure`` (this side failed the connection; its reason is each
library's own wording, so only the code is compared: ``Failure(code, "")``).

What each sends back on its own (pongs, the echo of a close, the close frame of a
failure) is compared as frames, ``(opcode, payload)``, the payload of a failure's
close frame cut to its code.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import NamedTuple, TypeVar

from websockets.frames import Close as WebsocketsClose
from websockets.frames import Frame as WebsocketsFrame
from websockets.frames import Opcode as WebsocketsOpcode
from websockets.protocol import Protocol as WebsocketsProtocol
from websockets.protocol import Side
from websockets.streams import StreamReader
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, TextMessage
from wsproto.events import Ping as WsprotoPing
from wsproto.events import Pong as WsprotoPong

from wsroute._wire.events import Close, Event, Failure, Ping, Pong
from wsroute._wire.frames import OP_CLOSE
from wsroute._wire.protocol import Protocol

T = TypeVar("T")


class Reading(NamedTuple):
    """What one implementation made of a stream of reads."""

    events: list[Event]  # up to and including the first Close or Failure
    answers: list[tuple[int, bytes]]  # the frames it sent back on its own


def finish(coroutine: Generator[None, None, T]) -> T:
    """Run one of the websockets library's generator-based parsers over data it has."""
    try:
        next(coroutine)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the frame is not whole")


def parse_frames(data: bytes, *, masked: bool) -> list[WebsocketsFrame]:
    """Every frame in ``data``, read (and checked) by the websockets library."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        frames.append(finish(WebsocketsFrame.parse(reader.read_exact, mask=masked)))
    return frames


def answers(data: bytes, *, failed: bool, masked: bool = False) -> list[tuple[int, bytes]]:
    frames = [(int(f.opcode), bytes(f.data)) for f in parse_frames(data, masked=masked)]
    if failed:
        opcode, payload = frames[-1]
        assert opcode == OP_CLOSE
        frames[-1] = (opcode, payload[:2])
    return frames


def chunked(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` in reads of the sizes ``cuts`` says, the last read taking the rest."""
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(data[pos : pos + size])
        pos += size
    chunks.append(data[pos:])
    return [chunk for chunk in chunks if chunk]


def comparable(events: list[Event]) -> list[Event]:
    return [Failure(e.code, "") if isinstance(e, Failure) else e for e in events]


def wsroute_reads(chunks: Sequence[bytes], *, max_message_size: int = 2**40) -> Reading:
    """What a server's ``Protocol`` reports, checking its own invariants on the way."""
    protocol = Protocol(max_message_size=max_message_size)
    events: list[Event] = []
    out = b""
    for chunk in chunks:
        events += protocol.receive_data(chunk)
        out += protocol.data_to_send()
    ends = [n for n, e in enumerate(events) if isinstance(e, Close | Failure)]
    assert ends in ([], [len(events) - 1])  # nothing after the end
    assert protocol.failed == any(isinstance(e, Failure) for e in events)
    assert (protocol.state.value == "closed") == bool(ends)
    return Reading(comparable(events), answers(out, failed=protocol.failed))


def wsproto_reads(chunks: Sequence[bytes]) -> Reading:
    """What wsproto's server ``Connection`` reports, answered as an application answers:
    a pong for each ping, the echo of the peer's close, a close frame on a failure.

    wsproto reports a failure as a ``CloseConnection`` while its state stays OPEN (it
    is for the application to send the close frame); the peer's close moves it to
    REMOTE_CLOSING."""
    connection = Connection(ConnectionType.SERVER)
    events: list[Event] = []
    parts: list[str | bytes] = []
    out = b""
    for chunk in chunks:
        connection.receive_data(chunk)
        for event in connection.events():
            if isinstance(event, Message):
                parts.append(event.data)
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        events.append("".join(parts))  # type: ignore[arg-type]
                    else:
                        assert isinstance(event, BytesMessage)
                        events.append(b"".join(parts))  # type: ignore[arg-type]
                    parts = []
            elif isinstance(event, WsprotoPing):
                events.append(Ping(bytes(event.payload)))
                out += connection.send(event.response())
            elif isinstance(event, WsprotoPong):
                events.append(Pong(bytes(event.payload)))
            else:
                assert isinstance(event, CloseConnection)
                if connection.state is ConnectionState.REMOTE_CLOSING:
                    events.append(Close(int(event.code), event.reason or ""))
                    out += connection.send(event.response())
                    return Reading(events, answers(out, failed=False))
                assert connection.state is ConnectionState.OPEN
                events.append(Failure(int(event.code), ""))
                out += connection.send(CloseConnection(code=event.code))
                return Reading(events, answers(out, failed=True))
    return Reading(events, answers(out, failed=False))


def websockets_reads(chunks: Sequence[bytes], *, max_size: int | None = None) -> Reading:
    """What the websockets library's sans-IO server ``Protocol`` reports. It answers
    pings and echoes a close by itself, and assembles no messages (nor checks their
    UTF-8: its connection layer does), so fragments are joined and decoded here."""
    protocol = WebsocketsProtocol(Side.SERVER, max_size=max_size)
    frames: list[WebsocketsFrame] = []
    out = b""
    for chunk in chunks:
        protocol.receive_data(chunk)
        frames += protocol.events_received()
        out += b"".join(protocol.data_to_send())
    events: list[Event] = []
    parts: list[bytes] = []
    text = False
    for frame in frames:
        if frame.opcode in (WebsocketsOpcode.TEXT, WebsocketsOpcode.BINARY):
            text = frame.opcode is WebsocketsOpcode.TEXT
            parts = [frame.data]
        elif frame.opcode is WebsocketsOpcode.CONT:
            parts.append(frame.data)
        elif frame.opcode is WebsocketsOpcode.PING:
            events.append(Ping(frame.data))
            continue
        elif frame.opcode is WebsocketsOpcode.PONG:
            events.append(Pong(frame.data))
            continue
        else:
            close = WebsocketsClose.parse(frame.data)
            events.append(Close(close.code, close.reason))
            continue
        if frame.fin:
            data = b"".join(parts)
            events.append(data.decode() if text else data)
    failed = protocol.parser_exc is not None
    if failed:
        assert protocol.close_sent is not None
        events.append(Failure(int(protocol.close_sent.code), ""))
    return Reading(events, answers(out, failed=failed))
