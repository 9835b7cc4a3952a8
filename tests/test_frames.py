"""The fast path for whole text frames (wsroute/_frames.py), against wsproto itself.

The reader (``WebSocket.run_reader``) takes whole text messages off the front of
what it read while wsproto is idle and hands wsproto the rest. Whatever the bytes
and however they are split into reads, that must give exactly the events wsproto
alone gives: the property test below runs both on the same bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

from wsroute._frames import close_answer, read_close, split_text_frames
from wsroute._websocket import wsproto_idle

from .rawws import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, frame

BIG = 2**20


def text(message: str, **options: bool) -> bytes:
    return frame(TEXT, message.encode(), **options)


def test_whole_text_frames_are_read() -> None:
    data = text("hello") + text("") + text("é" * 200) + text("z" * 70_000)
    assert split_text_frames(data, BIG) == (["hello", "", "é" * 200], len(data) - 70_014)


@pytest.mark.parametrize(
    "stopper",
    [
        pytest.param(frame(PING, b"p"), id="ping"),
        pytest.param(frame(CLOSE, b"\x03\xe8"), id="close"),
        pytest.param(frame(BINARY, b"b"), id="binary"),
        pytest.param(text("part", fin=False), id="fragment"),
        pytest.param(frame(CONTINUATION, b"c"), id="continuation"),
        pytest.param(text("rsv", rsv=0b100), id="RSV1"),
        pytest.param(text("unmasked", mask=False), id="unmasked"),
        pytest.param(text("short", long_form=True), id="16-bit length for 5 bytes"),
        pytest.param(text("x" * 70_000), id="64-bit length"),
        pytest.param(frame(TEXT, b"\xff"), id="invalid UTF-8"),
        pytest.param(frame(TEXT, b"\xed\xa0\x80"), id="encoded surrogate"),
        pytest.param(text("over the limit" * 10), id="over max_size"),
    ],
)
def test_stops_at_the_first_frame_for_wsproto(stopper: bytes) -> None:
    first = text("first")
    messages, used = split_text_frames(first + stopper + text("after"), 100)
    assert (messages, used) == (["first"], len(first))


@pytest.mark.parametrize("cut", [1, 2, 5, 7, 8, 9, 300])
def test_a_frame_not_yet_whole_is_left(cut: int) -> None:
    first = text("first")
    messages, used = split_text_frames(first + text("x" * 300)[:cut], BIG)
    assert (messages, used) == (["first"], len(first))


def events_of(connection: Connection) -> list[tuple[str, object]]:
    """wsproto's events, whole messages joined as the reader joins them."""
    return [(type(event).__name__, _data(event)) for event in connection.events()]


def _data(event: object) -> object:
    if isinstance(event, Message):
        return (event.data, event.message_finished)
    if isinstance(event, CloseConnection):
        return (int(event.code), event.reason)
    if isinstance(event, Ping | Pong):
        return event.payload
    return None


def join(events: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Whole messages: the fast path yields one per message, wsproto one per frame."""
    joined: list[tuple[str, object]] = []
    parts: list[object] = []
    for kind, data in events:
        if kind in (TextMessage.__name__, BytesMessage.__name__):
            assert isinstance(data, tuple)
            parts.append(data[0])
            if data[1]:
                whole = "".join(parts) if kind == TextMessage.__name__ else b"".join(parts)  # type: ignore[arg-type]
                joined.append((kind, whole))
                parts = []
        else:
            joined.append((kind, data))
    return joined


def until_closed(events: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """The events up to the first close, the peer's or a failure: the reader reads
    no more after one."""
    for n, (kind, _) in enumerate(events):
        if kind == CloseConnection.__name__:
            return events[: n + 1]
    return events


def read_with_fast_path(chunks: list[bytes], max_size: int) -> list[tuple[str, object]]:
    """What run_reader does with each read."""
    connection = Connection(ConnectionType.SERVER)
    events: list[tuple[str, object]] = []
    for chunk in chunks:
        if wsproto_idle(connection):
            messages, used = split_text_frames(chunk, max_size)
            events += [(TextMessage.__name__, (m, True)) for m in messages]
            chunk = chunk[used:]
            if not chunk:
                continue
            closing = read_close(chunk)
            if closing is not None:
                events.append((CloseConnection.__name__, closing))
                break
        connection.receive_data(chunk)
        events += events_of(connection)
        if any(kind == CloseConnection.__name__ for kind, _ in events):
            break
    return join(until_closed(events))


def read_with_wsproto(chunks: list[bytes]) -> list[tuple[str, object]]:
    connection = Connection(ConnectionType.SERVER)
    events: list[tuple[str, object]] = []
    for chunk in chunks:
        connection.receive_data(chunk)
        events += events_of(connection)
    return join(until_closed(events))


_payloads = st.one_of(
    st.text(max_size=40).map(str.encode),
    st.text(min_size=126, max_size=400).map(str.encode),
    st.binary(max_size=20),  # often invalid UTF-8 as text
)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


#: Close codes around every edge of what a peer may send (RFC 6455 section 7.4).
_EDGE_CODES = [0, 999, 1000, 1003, 1004, 1005, 1006, 1007, 1013, 1014, 1015, 1016, 2999]
_EDGE_CODES += [3000, 4999, 5000, 65535]

close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(
        close_payload,
        st.one_of(st.sampled_from(_EDGE_CODES), st.integers(0, 65535)),
        st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=20)),
    ),
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["text"] * 6 + ["binary", "ping", "pong", "fragmented", "malformed", "close"]
        )
    )
    payload = draw(_payloads)
    if kind == "text":
        return frame(TEXT, payload)
    if kind == "binary":
        return frame(BINARY, payload)
    if kind in ("ping", "pong"):
        return frame(PING if kind == "ping" else PONG, payload[:125])
    if kind == "fragmented":
        cut = draw(st.integers(0, len(payload)))
        return frame(TEXT, payload[:cut], fin=False) + frame(CONTINUATION, payload[cut:])
    if kind == "close":
        return frame(CLOSE, draw(close_payloads))
    flaw = draw(st.sampled_from(["rsv", "unmasked", "long_form", "continuation"]))
    if flaw == "continuation":
        return frame(CONTINUATION, payload)
    return frame(
        TEXT,
        payload[:125],
        rsv=0b010 if flaw == "rsv" else 0,
        mask=flaw != "unmasked",
        long_form=flaw == "long_form",
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(frames(), min_size=1, max_size=12),
    st.lists(st.integers(1, 600), max_size=12),
    st.sampled_from([BIG, 100]),
)
def test_same_events_as_wsproto_alone(
    sequence: list[bytes], cuts: list[int], max_size: int
) -> None:
    data = b"".join(sequence)
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(data[pos : pos + size])
        pos += size
    chunks.append(data[pos:])
    chunks = [c for c in chunks if c]
    assert read_with_fast_path(chunks, max_size) == read_with_wsproto(chunks)


# -- the peer's close frame --------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"", (1005, ""), id="no code"),
        pytest.param(close_payload(1000), (1000, ""), id="1000"),
        pytest.param(close_payload(1001, b"bye"), (1001, "bye"), id="1001 bye"),
        pytest.param(close_payload(3000), (3000, ""), id="3000"),
        pytest.param(close_payload(4999, "é".encode() * 61), (4999, "é" * 61), id="longest"),
    ],
)
def test_a_close_frame_is_read(payload: bytes, expected: tuple[int, str]) -> None:
    assert read_close(frame(CLOSE, payload)) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(CLOSE, close_payload(1000))[:-1], id="not yet whole"),
        pytest.param(frame(CLOSE, close_payload(1000)) + b"\x81", id="more after it"),
        pytest.param(text("hi") + frame(CLOSE, close_payload(1000)), id="text first"),
        pytest.param(frame(CLOSE, close_payload(1000), mask=False), id="unmasked"),
        pytest.param(frame(CLOSE, close_payload(1000), fin=False), id="fragmented"),
        pytest.param(frame(CLOSE, close_payload(1000), rsv=0b100), id="RSV1"),
        pytest.param(frame(CLOSE, close_payload(1000), long_form=True), id="16-bit length"),
        pytest.param(frame(CLOSE, b"\x03"), id="1 byte"),
        pytest.param(frame(CLOSE, close_payload(1000, b"x" * 124)), id="126 bytes"),
        pytest.param(frame(CLOSE, close_payload(1000, b"\xff")), id="reason not UTF-8"),
        *(
            pytest.param(frame(CLOSE, close_payload(code)), id=f"code {code}")
            for code in (999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000)
        ),
    ],
)
def test_anything_else_is_left_to_wsproto(data: bytes) -> None:
    assert read_close(data) is None


@settings(max_examples=500, deadline=None)
@given(close_payloads)
def test_a_close_is_read_and_answered_exactly_as_wsproto_does(payload: bytes) -> None:
    data = frame(CLOSE, payload[:125])
    connection = Connection(ConnectionType.SERVER)
    connection.receive_data(data)
    (event,) = connection.events()
    assert isinstance(event, CloseConnection)
    ours = read_close(data)
    # wsproto takes a close it accepts to REMOTE_CLOSING; one it fails stays OPEN.
    accepted = connection.state is ConnectionState.REMOTE_CLOSING
    assert (ours is not None) == accepted
    if ours is not None:
        assert ours == (int(event.code), event.reason)
        assert close_answer(*ours) == connection.send(event.response())
