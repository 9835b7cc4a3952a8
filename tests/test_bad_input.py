"""Bad input over real sockets: every case gets its exact answer, and nobody else notices.

Where the frame itself is the bad input, a raw TCP client (``tests/rawws.py``) writes
it byte by byte; elsewhere the `websockets` client is used. Each case asserts the
answer (HTTP status, close code or error code) and that a well-behaved control client
on the same server is answered before and after. docs/conformance.md tabulates the
cases and their answers.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import attrs
import pytest
import trio
from websockets.exceptions import InvalidStatus
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Pong, Request, TextMessage

from wsroute import App, Disconnect, bearer_auth

from .rawws import (
    CLOSE,
    CONTINUATION,
    PING,
    TEXT,
    frame,
    http_exchange,
    open_raw,
    read_to_end,
    upgrade_request,
)
from .wsclient import connect

Serve = Callable[[App], Awaitable[int]]


@attrs.frozen
class Point:
    x: int
    y: int


def make_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    @app.direct("move")
    async def move(point: Point) -> Point:
        return point

    @app.direct("echo")
    async def echo(text: str) -> str:
        return text

    return app


@asynccontextmanager
async def control(port: int, **kwargs: Any) -> AsyncIterator[None]:
    """A well-behaved client on the same server, answered before and after the case."""
    async with connect(port, **kwargs) as client:
        expected = {"type": "ping", "id": "control", "ok": True, "data": "pong"}
        assert await client.request("ping", id="control") == expected
        yield
        assert await client.request("ping", id="control") == expected


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


# -- the opening handshake -------------------------------------------------------------

KEY = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")


def handshake(*headers: tuple[str, str], method: str = "GET") -> bytes:
    lines = [f"{method} / HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


UPGRADE = ("Upgrade", "websocket")
CONNECTION = ("Connection", "Upgrade")
VERSION = ("Sec-WebSocket-Version", "13")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(handshake(CONNECTION, KEY, VERSION), 400, id="no Upgrade header"),
        pytest.param(
            handshake(("Upgrade", "h2c"), CONNECTION, KEY, VERSION), 400, id="Upgrade h2c"
        ),
        pytest.param(handshake(UPGRADE, KEY, VERSION), 400, id="no Connection header"),
        pytest.param(handshake(UPGRADE, CONNECTION, KEY), 400, id="no version"),
        pytest.param(
            handshake(UPGRADE, CONNECTION, KEY, ("Sec-WebSocket-Version", "8")),
            426,
            id="version 8",
        ),
        pytest.param(handshake(UPGRADE, CONNECTION, VERSION), 400, id="no key"),
        pytest.param(handshake(), 426, id="plain HTTP GET"),
        pytest.param(
            handshake(UPGRADE, CONNECTION, KEY, VERSION, ("Content-Length", "0"), method="POST"),
            400,
            id="POST",
        ),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(160), 400, id="TLS"),
        pytest.param(
            handshake(UPGRADE, CONNECTION, KEY, VERSION).replace(b"HTTP/1.1", b"HTTP/1.0"),
            400,
            id="HTTP/1.0",
        ),
        pytest.param(
            handshake(UPGRADE, CONNECTION, KEY, VERSION, ("Host", "b.test")), 400, id="two Hosts"
        ),
        pytest.param(
            handshake(UPGRADE, CONNECTION, KEY, VERSION, ("X-Folded", "a\r\n b")),
            400,
            id="folded header",
        ),
        pytest.param(
            handshake(UPGRADE, CONNECTION, ("Sec-WebSocket-Key", "c2hvcnQ="), VERSION),
            400,
            id="key of 5 bytes",
        ),
        pytest.param(
            handshake(UPGRADE, CONNECTION, KEY, VERSION, ("Content-Length", "5")) + b"hello",
            400,
            id="a body",
        ),
        pytest.param(
            upgrade_request(headers=[(f"X-Pad-{i}", "a" * 1000) for i in range(200)]),
            431,
            id="200 KB of headers",
        ),
    ],
)
async def test_bad_upgrade_requests_are_refused(
    serve: Serve, request_bytes: bytes, status: int
) -> None:
    port = await serve(make_app())
    async with control(port):
        answer = await http_exchange(port, request_bytes)
        assert answer.status == status, answer
        if status == 426 and b"Upgrade:" in request_bytes:
            assert answer.headers["sec-websocket-version"] == "13"
        elif status == 426:  # a plain request: say what this endpoint is
            assert answer.headers["upgrade"] == "websocket"
            assert answer.headers["content-type"] == "text/plain; charset=utf-8"
            assert answer.body == (
                b"This is a WebSocket endpoint: connect with a WebSocket client"
                b" (ws:// or wss://).\n"
            )


async def test_a_browser_opening_the_endpoint_as_a_page_is_told_what_it_is(
    serve: Serve,
) -> None:
    port = await serve(make_app())
    request = (
        b"GET /?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html,*/*;q=0.8\r\n"
        b"User-Agent: Mozilla/5.0\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    answer = await http_exchange(port, request)
    assert answer.status == 426
    assert answer.headers["content-length"] == str(len(answer.body))
    assert answer.headers["connection"] == "close"
    assert answer.body.startswith(b"This is a WebSocket endpoint")


async def test_silent_handshake_is_dropped_at_handshake_timeout(serve: Serve) -> None:
    port = await serve(make_app(handshake_timeout=0.5))
    async with await trio.open_tcp_stream("127.0.0.1", port) as silent:
        start = trio.current_time()
        async with control(port):  # connects and is served while the silent one waits
            data, _ = await read_to_end(silent, timeout=3)
        assert data == b""
        assert 0.4 < trio.current_time() - start < 2.5


async def test_trickled_handshake_is_cut_at_the_same_total_deadline(serve: Serve) -> None:
    port = await serve(make_app(handshake_timeout=0.5))
    request = upgrade_request()
    assert len(request) * 0.02 > 2  # at a byte per 20 ms, it would take over 2 s

    async with await trio.open_tcp_stream("127.0.0.1", port) as trickle:
        start = trio.current_time()

        async def send_slowly() -> None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                for byte in request:
                    await trickle.send_all(bytes([byte]))
                    await trio.sleep(0.02)

        async with control(port), trio.open_nursery() as nursery:
            nursery.start_soon(send_slowly)
            data, _ = await read_to_end(trickle, timeout=3)
            nursery.cancel_scope.cancel()
        assert data == b""
        assert 0.4 < trio.current_time() - start < 2.0


ALLOWED = "https://app.example.com"


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://app.example.com.evil.net", 403),
        ("https://evil.net", 403),
        ("https://evil.net/https://app.example.com", 403),
        ("http://app.example.com", 403),
        ("https://app.example.com:8443", 403),
        ("https://sub.app.example.com", 403),
        ("null", 403),
        ("https://app.example.com", 101),
        ("HTTPS://APP.EXAMPLE.COM", 101),
        ("https://app.example.com/", 101),
        (None, 101),  # not a browser: no Origin, nothing to hijack
    ],
)
async def test_origin_allow_list(serve: Serve, origin: str | None, status: int) -> None:
    port = await serve(make_app(allowed_origins=[ALLOWED]))
    async with control(port, origin=ALLOWED):
        if status == 101:
            async with connect(port, origin=origin) as client:
                assert (await client.request("ping"))["data"] == "pong"
            return
        with pytest.raises(InvalidStatus) as refused:
            async with connect(port, origin=origin):
                pass
        assert refused.value.response.status_code == status
        assert refused.value.response.body == b"origin not allowed"


def verify(token: str) -> dict[str, str] | None:
    return {"id": "alice"} if token == "s3cret" else None


@pytest.mark.parametrize(
    ("path", "headers", "status", "body"),
    [
        ("/", {}, 401, b"missing bearer token"),
        ("/", {"Authorization": "Bearer wrong"}, 401, b"invalid token"),
        ("/", {"Authorization": "Bearer "}, 401, b"missing bearer token"),
        ("/", {"Authorization": "Basic czNjcmV0"}, 401, b"missing bearer token"),
        ("/?token=wrong", {}, 401, b"invalid token"),
        ("/?token=", {}, 401, b"missing bearer token"),
        ("/", {"Authorization": "Bearer s3cret"}, 101, b""),
        ("/", {"Authorization": "bearer s3cret"}, 101, b""),
        ("/?token=s3cret", {}, 101, b""),
    ],
)
async def test_bearer_auth(
    serve: Serve, path: str, headers: dict[str, str], status: int, body: bytes
) -> None:
    app = make_app()
    app.accept(bearer_auth(verify))
    port = await serve(app)
    async with control(port, additional_headers={"Authorization": "Bearer s3cret"}):
        if status == 101:
            async with connect(port, path, additional_headers=headers) as client:
                assert (await client.request("ping"))["data"] == "pong"
            return
        with pytest.raises(InvalidStatus) as refused:
            async with connect(port, path, additional_headers=headers):
                pass
        assert refused.value.response.status_code == status
        assert refused.value.response.headers["WWW-Authenticate"] == "Bearer"
        assert refused.value.response.body == body


# -- frames ------------------------------------------------------------------------------

MAX = 1000


async def test_message_of_exactly_max_message_size_is_served(serve: Serve) -> None:
    port = await serve(make_app(max_message_size=MAX))
    async with control(port), open_raw(port) as raw:
        request = '{"type": "ping", "id": 1}'
        await raw.send_text(request.ljust(MAX))  # JSON allows trailing whitespace
        assert await raw.recv_json() == {"type": "ping", "id": 1, "ok": True, "data": "pong"}


async def test_message_of_exactly_max_message_size_in_bytes_of_utf8_is_served(
    serve: Serve,
) -> None:
    port = await serve(make_app(max_message_size=MAX))
    async with control(port), open_raw(port) as raw:
        head = '{"type": "echo", "id": 1, "data": "'
        text = "é" * ((MAX - len(head) - 2) // 2)  # 2 bytes each
        message = (head + text + '"}').ljust(MAX - len(text))  # MAX bytes, fewer chars
        assert len(message.encode()) == MAX
        await raw.send_text(message)
        assert (await raw.recv_json())["data"] == text


@pytest.mark.parametrize("fragment", [None, 64], ids=["one frame", "64-byte fragments"])
async def test_a_text_message_over_the_limit_in_bytes_closes_with_1009(
    serve: Serve, fragment: int | None
) -> None:
    # The limit counts bytes, for text too: fewer characters than MAX, more bytes.
    port = await serve(make_app(max_message_size=MAX))
    payload = ('{"type": "echo", "data": "' + "é" * (MAX // 2) + '"}').encode()
    assert len(payload.decode()) < MAX < len(payload)
    frames = [frame(TEXT, payload)] if fragment is None else fragments(payload, fragment)
    async with control(port), open_raw(port) as raw:
        for data in frames:
            await raw.send(data)
        closed = await raw.closed()
        await raw.dropped()
    assert (closed.code, closed.frames) == (1009, [])
    assert closed.reason == f"Exceeded maximum message size: {MAX} bytes"


def bare_header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """A masked frame's header announcing ``length`` bytes (in the shortest form), and
    none of them."""
    first = (0x80 if fin else 0) | opcode
    if length < 2**16:
        return struct.pack("!BBH", first, 0x80 | 126, length) + b"mask"
    return struct.pack("!BBQ", first, 0x80 | 127, length) + b"mask"


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"", id="one frame"),
        pytest.param(frame(TEXT, b'{"type": "echo", "data": "', fin=False), id="a fragment"),
    ],
)
@pytest.mark.parametrize("length", [2**62, MAX + 1], ids=["2^62", "limit + 1"])
async def test_a_header_announcing_too_much_closes_with_1009_at_once(
    serve: Serve, prefix: bytes, length: int
) -> None:
    """Refused from the header, before a byte of the payload: no heartbeat runs here,
    so nothing else could end the connection before the test's timeout."""
    port = await serve(make_app(max_message_size=MAX, ping_interval=None))
    opcode = CONTINUATION if prefix else TEXT
    async with control(port), open_raw(port) as raw:
        await raw.send(prefix + bare_header(opcode, length - len(prefix) + 6 * bool(prefix)))
        closed = await raw.closed()
        await raw.dropped()
    assert (closed.code, closed.frames) == (1009, [])
    assert closed.reason == f"Exceeded maximum message size: {MAX} bytes"


async def test_a_header_announcing_exactly_the_limit_is_read(serve: Serve) -> None:
    port = await serve(make_app(max_message_size=MAX, ping_interval=None))
    message = ('{"type": "echo", "id": 1, "data": "' + "x" * MAX)[: MAX - 2] + '"}'
    data = frame(TEXT, message.encode())
    async with control(port), open_raw(port) as raw:
        await raw.send(data[:14])  # the header and a few bytes: the rest comes later
        await raw.send(data[14:])
        assert (await raw.recv_json())["id"] == 1


def fragments(payload: bytes, size: int) -> list[bytes]:
    """``payload`` as one text message in frames of ``size`` bytes (the cuts may
    fall inside a UTF-8 sequence, as RFC 6455 allows)."""
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [
        frame(TEXT if i == 0 else CONTINUATION, chunk, fin=i == len(chunks) - 1)
        for i, chunk in enumerate(chunks)
    ]


@pytest.mark.parametrize("fragment", [None, 64], ids=["one frame", "64-byte fragments"])
async def test_oversized_message_closes_with_1009(serve: Serve, fragment: int | None) -> None:
    port = await serve(make_app(max_message_size=MAX))
    payload = b'{"type": "ping", "data": "' + b"x" * 2 * MAX + b'"}'
    if fragment is None:
        frames = [frame(TEXT, payload)]
    else:
        chunks = [payload[i : i + fragment] for i in range(0, len(payload), fragment)]
        frames = [
            frame(TEXT if i == 0 else CONTINUATION, chunk, fin=i == len(chunks) - 1)
            for i, chunk in enumerate(chunks)
        ]
    async with control(port), open_raw(port) as raw:

        async def send_all() -> None:
            with suppress(trio.BrokenResourceError):  # the server stops reading
                for data in frames:
                    await raw.send(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            closed = await raw.closed()
            await raw.dropped()
            nursery.cancel_scope.cancel()
        assert (closed.code, closed.frames) == (1009, [])
        assert closed.reason == f"Exceeded maximum message size: {MAX} bytes"


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([frame(TEXT, b"\xff")], id="0xff"),
        pytest.param([frame(TEXT, b"\xc0\xaf")], id="overlong /"),
        pytest.param([frame(TEXT, b'"\xed\xa0\x80"')], id="encoded lone surrogate"),
        pytest.param([frame(TEXT, b"\xf4\x90\x80\x80")], id="beyond U+10FFFF"),
        pytest.param([frame(TEXT, b"abc\xe2\x82")], id="truncated at the end"),
        pytest.param(
            [frame(TEXT, b"caf", fin=False), frame(CONTINUATION, b"\xc3\x28")],
            id="in the second fragment",
        ),
        pytest.param([frame(CLOSE, close_payload(1000, b"\xff"))], id="close reason"),
    ],
)
async def test_invalid_utf8_closes_with_1007(serve: Serve, frames: list[bytes]) -> None:
    port = await serve(make_app())
    async with control(port), open_raw(port) as raw:
        await raw.send(b"".join(frames))
        closed = await raw.closed()
        assert (closed.code, closed.frames) == (1007, [])
        await raw.dropped()


PROTOCOL_ERRORS = [
    *(pytest.param([frame(op, b"x")], id=f"reserved opcode {op:#x}") for op in (3, 7, 0xB, 0xF)),
    *(pytest.param([frame(TEXT, b"{}", rsv=rsv)], id=f"RSV bits {rsv:03b}") for rsv in (4, 2, 1)),
    pytest.param([frame(TEXT, b"{}", mask=False)], id="unmasked"),
    pytest.param([frame(PING, b"x" * 126)], id="ping of 126 bytes"),
    pytest.param([frame(PING, b"x", fin=False)], id="fragmented ping"),
    pytest.param([frame(CONTINUATION, b"x")], id="continuation of nothing"),
    pytest.param([frame(TEXT, b"a", fin=False), frame(TEXT, b"b")], id="text within text"),
    pytest.param([frame(CLOSE, b"\x03")], id="close with 1 byte"),
    *(
        pytest.param([frame(CLOSE, close_payload(code))], id=f"close code {code}")
        for code in (999, 1005, 1006, 1016, 2999)
    ),
]


@pytest.mark.parametrize("frames", PROTOCOL_ERRORS)
async def test_protocol_errors_close_with_1002(serve: Serve, frames: list[bytes]) -> None:
    port = await serve(make_app())
    async with control(port), open_raw(port) as raw:
        await raw.send(b"".join(frames))
        closed = await raw.closed()
        assert (closed.code, closed.frames) == (1002, [])
        await raw.dropped()


async def test_binary_frame_closes_with_1003(serve: Serve) -> None:
    port = await serve(make_app())
    async with control(port), connect(port) as client:
        await client.send(b'{"type": "ping"}')
        assert await client.wait_closed() == (1003, "binary frames are not supported")


# -- messages ----------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
# The error replies: (type, id, code). Without a readable type and id, type is "error".
BAD_JSON = ("error", None, "invalid_json")
BAD_ENVELOPE = ("error", None, "invalid_message")


def move(data: str, id: int = 1) -> str:
    return f'{{"type": "move", "id": {id}, "data": {data}}}'


def ping_with_id(id: str) -> str:
    return f'{{"type": "ping", "id": {id}}}'


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        # Not JSON, or JSON that orjson would read differently than the client meant.
        ("hello", BAD_JSON),
        ("", BAD_JSON),
        ('{"type": "ping", "id": 1', BAD_JSON),
        (move(DEEP), BAD_JSON),
        (move("9" * 400), BAD_JSON),
        (move("18446744073709551616"), BAD_JSON),  # 2^64: orjson would make it a float
        (move("NaN"), BAD_JSON),
        (move("Infinity"), BAD_JSON),
        (move("-Infinity"), BAD_JSON),
        (move('{"x": 1e400, "y": 2}'), BAD_JSON),
        (move('"\\ud800"'), BAD_JSON),  # lone surrogates, escaped
        (move('"\\udc00x"'), BAD_JSON),
        # JSON, but not an envelope.
        ("[1, 2]", BAD_ENVELOPE),
        ("null", BAD_ENVELOPE),
        ('{"id": 1}', BAD_ENVELOPE),
        ('{"type": ""}', BAD_ENVELOPE),
        ('{"type": 7}', BAD_ENVELOPE),
        ('{"type": "' + "t" * 129 + '"}', BAD_ENVELOPE),
        ('{"type": "ping", "id": 1, "extra": true}', ("ping", 1, "invalid_message")),
        # Ids: integers within ±2^53 or strings of at most 64 characters.
        (ping_with_id("9007199254740993"), BAD_ENVELOPE),
        (ping_with_id("-9007199254740993"), BAD_ENVELOPE),
        (ping_with_id("99999999999999999999"), BAD_JSON),
        (ping_with_id("1.5"), BAD_ENVELOPE),
        (ping_with_id("1e3"), BAD_ENVELOPE),
        (ping_with_id("true"), BAD_ENVELOPE),
        (ping_with_id("[1]"), BAD_ENVELOPE),
        (ping_with_id('{"a": 1}'), BAD_ENVELOPE),
        (ping_with_id('"' + "i" * 65 + '"'), BAD_ENVELOPE),
        # Well-formed envelopes the app cannot take.
        ('{"type": "nope", "id": 1}', ("nope", 1, "unknown_type")),
        (move('{"x": "1", "y": 2}', id=2), ("move", 2, "invalid_data")),
        (move('{"x": 1.5, "y": 2}', id=3), ("move", 3, "invalid_data")),
        (move('{"x": 1}', id=4), ("move", 4, "invalid_data")),
        (move('{"x": 1, "y": 2, "z": 3}', id=5), ("move", 5, "invalid_data")),
        (move("[1, 2]", id=6), ("move", 6, "invalid_data")),
        (move('{"x": true, "y": 2}', id=7), ("move", 7, "invalid_data")),
        ('{"type": "ping", "id": 9, "data": {"x": 1}}', ("ping", 9, "invalid_data")),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
async def test_invalid_messages_get_error_replies(
    serve: Serve, text: str, answer: tuple[str, int | None, str]
) -> None:
    port = await serve(make_app())
    async with control(port), connect(port) as client:
        await client.send(text)
        reply = await client.recv()
        assert (reply["type"], reply.get("id"), reply["error"]["code"]) == answer, reply
        assert reply["ok"] is False and reply["error"]["message"]
        # An error reply never closes the connection.
        assert (await client.request("ping", id="after"))["data"] == "pong"


async def test_invalid_data_details_name_each_field(serve: Serve) -> None:
    port = await serve(make_app())
    async with control(port), connect(port) as client:
        await client.send({"type": "move", "id": 1, "data": {"x": "1", "z": 3}})
        assert (await client.recv())["error"]["details"] == [
            {"path": "$.x", "message": "expected an integer, got string"},
            {"path": "$.y", "message": "required field missing"},
            {"path": "$", "message": "extra fields found (z)"},
        ]


# -- floods ------------------------------------------------------------------------------


async def test_ping_flood_is_answered_and_others_stay_responsive(serve: Serve) -> None:
    port = await serve(make_app())
    count = 5000
    async with connect(port) as other, open_raw(port) as raw:
        pongs: list[bytes] = []

        async def read_pongs() -> None:
            while len(pongs) < count:
                event = await raw.event(timeout=10)
                assert isinstance(event, Pong), event
                pongs.append(bytes(event.payload))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_pongs)
            await raw.send(b"".join(frame(PING, str(n).encode()) for n in range(count)))
            # While the flood is being answered, another client is served as usual.
            for n in range(5):
                assert (await other.request("ping", id=n))["data"] == "pong"
        assert pongs == [str(n).encode() for n in range(count)]
        # The flooding connection itself still works.
        await raw.send_json({"type": "ping", "id": "after"})
        assert (await raw.recv_json())["data"] == "pong"


async def test_message_flood_over_the_rate_limit(serve: Serve) -> None:
    limit = 20
    port = await serve(make_app(rate_limit=(limit, 60.0)))
    async with control(port), open_raw(port) as raw:
        burst = [json.dumps({"type": "ping", "id": n}).encode() for n in range(3 * limit)]
        await raw.send(b"".join(frame(TEXT, text) for text in burst))
        closed = await raw.closed()
        assert (closed.code, closed.reason) == (1008, "rate limit exceeded")
        replies = [json.loads(event.data) for event in closed.frames]
        assert all(isinstance(event, TextMessage) for event in closed.frames)
        answered = sorted((r["id"], r["ok"]) for r in replies if r["ok"])
        limited = sorted(r["id"] for r in replies if not r["ok"])
        assert answered == [(n, True) for n in range(limit)]
        assert limited == list(range(limit, 2 * limit))
        assert {r["error"]["code"] for r in replies if not r["ok"]} == {"rate_limited"}
        await raw.answer_close()
        await raw.dropped()


async def test_a_frame_sent_with_the_upgrade_request_is_read_after_the_answer(
    serve: Serve,
) -> None:
    # RFC 6455 says a client waits for the 101; one that does not still gets its
    # frames read, in order, once the connection is open.
    port = await serve(make_app())
    client = WSConnection(ConnectionType.CLIENT)
    early = frame(TEXT, json.dumps({"type": "ping", "id": 1}).encode())
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(client.send(Request(host="127.0.0.1", target="/")) + early)
        events: list[Any] = []
        with trio.fail_after(5):
            while not any(isinstance(e, TextMessage) for e in events):
                data = await stream.receive_some(65536)
                assert data, "closed by the server"
                client.receive_data(data)
                events += client.events()
    assert isinstance(events[0], AcceptConnection)
    assert json.loads(events[1].data) == {"type": "ping", "id": 1, "ok": True, "data": "pong"}


async def test_a_peer_gone_while_the_accept_hook_runs_is_no_error(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsroute")
    app = make_app()
    asked = trio.Event()
    gone = trio.Event()

    @app.accept
    async def accept(request: Any) -> None:
        if request.path == "/doomed":
            asked.set()
            await gone.wait()  # then the 101 meets a reset socket

    port = await serve(app)
    async with control(port):
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        await sock.send(upgrade_request("/doomed"))
        with trio.fail_after(5):
            await asked.wait()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        await trio.sleep(0.1)  # the reset reaches the server's socket
        gone.set()
        with trio.fail_after(5):
            while not any("closed during the handshake" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.01)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    connected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("connect ")]
    assert connected and not [line for line in connected if "/doomed" in line]


async def test_a_refused_upgrade_ends_at_once_not_at_the_handshake_timeout(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsroute")
    port = await serve(make_app(handshake_timeout=30))
    answer = await http_exchange(port, handshake(UPGRADE, CONNECTION, KEY))  # no version
    assert answer.status == 400
    with trio.fail_after(1):
        while not any("refused an upgrade" in r.getMessage() for r in caplog.records):
            await trio.sleep(0.01)
    assert not any("timed out" in r.getMessage() for r in caplog.records)


async def test_a_head_over_16_kib_is_431_with_the_limit_in_the_answer_and_the_log(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # A valid upgrade whose recovery positions make the head too large (docs/history.md):
    # the client is told what is wrong, not given an empty 400.
    caplog.set_level(logging.INFO, logger="wsroute")
    port = await serve(make_app())
    positions = json.dumps({f"room:{i:04}": [i, "e" * 20] for i in range(600)})
    request = upgrade_request(f"/?wsroute.recover={positions}".replace(" ", ""))
    assert 16 * 1024 < len(request) < 65536  # read whole: the answer is not lost to a reset
    async with control(port):
        answer = await http_exchange(port, request)
    assert (answer.status, answer.reset) == (431, False), answer
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.body == (
        b"request head too large: it exceeds the limit of 16 KiB (16384 bytes) on the request"
        b" line and headers\n"
    )
    with trio.fail_after(1):
        while not (refused := [m for m in caplog.messages if "refused an upgrade" in m]):
            await trio.sleep(0.01)
    assert len(refused) == 1 and re.fullmatch(
        r"refused an upgrade from 127\.0\.0\.1:\d+: 431 request head too large: it exceeds"
        r" the limit of 16 KiB \(16384 bytes\) on the request line and headers",
        refused[0],
    ), refused


async def test_protocol_errors_are_recorded_as_the_servers_close(serve: Serve) -> None:
    app = make_app()
    ended: list[Disconnect] = []
    gone = trio.Event()

    @app.on_disconnect
    async def record(reason: Disconnect) -> None:
        ended.append(reason)
        gone.set()

    port = await serve(app)
    async with open_raw(port) as raw:
        await raw.send(frame(3, b"x"))
        assert (await raw.closed()).code == 1002
    with trio.fail_after(5):
        await gone.wait()
    assert [(d.code, d.initiator) for d in ended] == [(1002, "server")]
