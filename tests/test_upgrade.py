"""The server's opening handshake without h11 (wsroute/_upgrade.py), sans-IO.

Real sockets: tests/test_bad_input.py (refusals) and every other server test
(acceptance). Here: the exact events and bytes, and agreement with wsproto's own
h11-based handshake on the requests real clients send.
"""

from __future__ import annotations

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    Message,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from wsroute._upgrade import MAX_HEAD, PlainRequest, ServerConnection, accept_token

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
BASE = [
    (b"Host", b"example.test:8000"),
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Key", KEY),
    (b"Sec-WebSocket-Version", b"13"),
]


def head(
    headers: list[tuple[bytes, bytes]] = BASE, line: bytes = b"GET /chat?x=1 HTTP/1.1"
) -> bytes:
    return line + b"\r\n" + b"".join(b"%s: %s\r\n" % h for h in headers) + b"\r\n"


def receive(data: bytes, *, by_byte: bool = False) -> tuple[ServerConnection, list[object]]:
    ws = ServerConnection()
    for chunk in [data[i : i + 1] for i in range(len(data))] if by_byte else [data]:
        ws.receive_data(chunk)
    return ws, list(ws.events())


def refusal(data: bytes) -> RejectConnection:
    ws = ServerConnection()
    with pytest.raises(RemoteProtocolError) as info:
        ws.receive_data(data)
    hint = info.value.event_hint
    assert isinstance(hint, RejectConnection)
    assert ws.state is ConnectionState.CONNECTING  # so that the refusal can be sent
    return hint


def test_accept_token_is_rfc_6455s_example() -> None:
    assert accept_token(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("by_byte", [False, True], ids=["whole", "byte by byte"])
def test_request_event(by_byte: bool) -> None:
    headers = [
        *BASE,
        (b"Sec-WebSocket-Protocol", b"chat.v2, chat.v1"),
        (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
        (b"Origin", b"https://app.example.test"),
        (b"Cookie", b"a=b;  c=d "),
    ]
    _, events = receive(head(headers), by_byte=by_byte)
    assert events == [
        Request(
            host="example.test:8000",
            target="/chat?x=1",
            extensions=["permessage-deflate; client_max_window_bits"],
            extra_headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-key", KEY),
                (b"sec-websocket-version", b"13"),
                (b"origin", b"https://app.example.test"),
                (b"cookie", b"a=b;  c=d"),
            ],
            subprotocols=["chat.v2", "chat.v1"],
        )
    ]


def test_empty_lines_before_the_request_and_bare_line_feeds_are_read() -> None:
    _, events = receive(b"\r\n\r\n" + head().replace(b"\r\n", b"\n"))
    assert [type(e) for e in events] == [Request]


def test_list_headers_are_token_lists() -> None:
    headers = [
        (b"Host", b"h"),
        (b"Upgrade", b"foo/1, WebSocket"),
        (b"Connection", b"keep-alive, upgrade"),
    ]
    _, events = receive(head([*headers, *BASE[3:]]))
    assert [type(e) for e in events] == [Request]


def test_accepting_answers_101_and_opens_the_connection() -> None:
    ws, _ = receive(head([*BASE, (b"Sec-WebSocket-Protocol", b"a, b")]))
    answer = ws.send(AcceptConnection(subprotocol="b", extra_headers=[(b"X-Server", b"wsroute")]))
    assert answer == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: b\r\nX-Server: wsroute\r\n\r\n"
    )
    assert ws.state is ConnectionState.OPEN
    assert ws.connection is not None
    ws.receive_data(masked_text("hi"))
    assert [e.data for e in ws.events() if isinstance(e, Message)] == ["hi"]


def test_a_subprotocol_the_client_did_not_propose_is_refused_locally() -> None:
    ws, _ = receive(head([*BASE, (b"Sec-WebSocket-Protocol", b"a")]))
    with pytest.raises(LocalProtocolError, match="unexpected subprotocol"):
        ws.send(AcceptConnection(subprotocol="z"))
    with pytest.raises(LocalProtocolError, match="invalid response header"):
        ws.send(AcceptConnection(extra_headers=[(b"X-Evil", b"a\r\nSet-Cookie: x")]))
    assert ws.state is ConnectionState.CONNECTING


def test_accepting_before_a_request_is_refused_locally() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().send(AcceptConnection())


def masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_bytes_before_the_answer_are_the_first_frames() -> None:
    ws, events = receive(head() + masked_text("early"))
    assert [type(e) for e in events] == [Request]
    ws.receive_data(masked_text(" and more"))  # still before the answer
    ws.send(AcceptConnection())
    assert [e.data for e in ws.events() if isinstance(e, TextMessage)] == ["early", " and more"]


def test_too_many_bytes_before_the_answer_fail_the_connection() -> None:
    ws, _ = receive(head())
    with pytest.raises(RemoteProtocolError) as info:
        ws.receive_data(b"x" * (MAX_HEAD + 1))
    assert info.value.event_hint is None


def test_the_peer_leaving_before_a_request() -> None:
    ws = ServerConnection()
    ws.receive_data(b"GET / HT")
    ws.receive_data(None)
    assert ws.state is ConnectionState.CLOSED
    assert list(ws.events()) == []


def drop(name: bytes) -> list[tuple[bytes, bytes]]:
    return [h for h in BASE if h[0] != name]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(head(drop(b"Upgrade")), 400, id="no Upgrade"),
        pytest.param(head([*drop(b"Upgrade"), (b"Upgrade", b"h2c")]), 400, id="Upgrade h2c"),
        pytest.param(head(drop(b"Connection")), 400, id="no Connection"),
        pytest.param(head(drop(b"Sec-WebSocket-Version")), 400, id="no version"),
        pytest.param(
            head([*drop(b"Sec-WebSocket-Version"), (b"Sec-WebSocket-Version", b"8")]),
            426,
            id="version 8",
        ),
        pytest.param(head(drop(b"Sec-WebSocket-Key")), 400, id="no key"),
        pytest.param(head([*BASE, (b"Sec-WebSocket-Key", KEY)]), 400, id="two keys"),
        pytest.param(
            head([*drop(b"Sec-WebSocket-Key"), (b"Sec-WebSocket-Key", b"c2hvcnQ=")]),
            400,
            id="key of 5 bytes",
        ),
        pytest.param(
            head(
                [*drop(b"Sec-WebSocket-Key"), (b"Sec-WebSocket-Key", b"not base64 at all!!!!!==")]
            ),
            400,
            id="key not base64",
        ),
        pytest.param(head(drop(b"Host")), 400, id="no Host"),
        pytest.param(head([*BASE, (b"Host", b"other.test")]), 400, id="two Hosts"),
        pytest.param(head([*BASE, (b"Content-Length", b"5")]), 400, id="a body"),
        pytest.param(head([*BASE, (b"Content-Length", b"0")], b"POST / HTTP/1.1"), 400, id="POST"),
        pytest.param(head([*BASE, (b"Transfer-Encoding", b"chunked")]), 400, id="chunked body"),
        pytest.param(head(line=b"GET / HTTP/1.0"), 400, id="HTTP/1.0"),
        pytest.param(head(line=b"GET / HTTP/2.0"), 400, id="HTTP/2.0"),
        pytest.param(head(line=b"GET  / HTTP/1.1"), 400, id="two spaces"),
        pytest.param(head(line=b"GET /\xc3\xa9 HTTP/1.1"), 400, id="non-ASCII target"),
        pytest.param(head([*BASE, (b"X-Folded", b"a\r\n b")]), 400, id="folded header"),
        pytest.param(head([*BASE, (b"X-Bad", b"a\x00b")]), 400, id="NUL in a value"),
        pytest.param(head([*BASE, (b"X-Bad", b"a\rb")]), 400, id="CR in a value"),
        pytest.param(head([*BASE, (b"X-Bad ", b"v")]), 400, id="space before the colon"),
        pytest.param(head([*BASE, (b"X Bad", b"v")]), 400, id="space in a name"),
        pytest.param(
            head([*BASE, (b"no colon", b"")]).replace(b"no colon: ", b"nocolon"), 400, id="no colon"
        ),
        pytest.param(
            head([*drop(b"Connection"), (b"Connection", b"upgr\xe4de")]), 400, id="non-ASCII list"
        ),
        pytest.param(head([*BASE, (b"X-Pad", b"a" * MAX_HEAD)]), 400, id="head too long"),
    ],
)
def test_refusals(data: bytes, status: int) -> None:
    hint = refusal(data)
    assert hint.status_code == status
    if status == 426:
        assert (b"Sec-WebSocket-Version", b"13") in hint.headers


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Host", b"127.0.0.1")],
        [(b"Host", b"127.0.0.1"), (b"Connection", b"keep-alive"), (b"Accept", b"text/html")],
    ],
    ids=["bare", "browser"],
)
def test_a_plain_request_is_reported_for_the_plain_routes(
    headers: list[tuple[bytes, bytes]],
) -> None:
    ws = ServerConnection()
    ws.receive_data(head(headers, line=b"GET /page?x=1 HTTP/1.1") + b"GET /again HTTP/1.1\r\n")
    assert list(ws.events()) == [
        PlainRequest("GET", "/page?x=1", [(name.lower(), value) for name, value in headers])
    ]
    ws.receive_data(b"\r\n")  # the rest is not read: one answer, then the connection closes
    assert list(ws.events()) == []
    assert ws.state is ConnectionState.REJECTING


def test_a_plain_request_of_any_method_is_reported() -> None:
    # The runtime answers 405 to methods other than GET and HEAD; an upgrade
    # request must still be a GET.
    _, events = receive(head([(b"Host", b"h")], line=b"POST /form HTTP/1.1"))
    assert events == [PlainRequest("POST", "/form", [(b"host", b"h")])]


def test_not_http_is_refused_before_a_line_ends() -> None:
    hint = refusal(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")  # a TLS ClientHello
    assert hint.status_code == 400
    ws = ServerConnection()
    ws.receive_data(b"GET /" + b"a" * 1000)  # plausible so far: keep reading
    assert list(ws.events()) == []


def test_a_head_without_end_is_refused_once_over_the_limit() -> None:
    ws = ServerConnection()
    ws.receive_data(head()[:-2])
    with pytest.raises(RemoteProtocolError):
        for _ in range(MAX_HEAD // 1000 + 1):
            ws.receive_data(b"X-Pad: " + b"a" * 1000 + b"\r\n")


@pytest.mark.parametrize(
    ("event", "answer", "state"),
    [
        (
            RejectConnection(status_code=400),
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ConnectionState.CLOSED,
        ),
        (
            RejectConnection(
                status_code=401,
                headers=[(b"WWW-Authenticate", b"Bearer"), (b"Content-Length", b"3")],
                has_body=True,
            ),
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\n",
            ConnectionState.REJECTING,
        ),
        (
            RejectConnection(status_code=499),
            b"HTTP/1.1 499 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ConnectionState.CLOSED,
        ),
    ],
)
def test_rejecting(event: RejectConnection, answer: bytes, state: ConnectionState) -> None:
    ws, _ = receive(head())
    assert ws.send(event) == answer
    assert ws.state is state
    if state is ConnectionState.REJECTING:
        assert ws.send(RejectData(data=b"who", body_finished=True)) == b"who"
        assert ws.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError):
        ws.send(AcceptConnection())


def test_refusing_a_refused_request_and_no_header_injection() -> None:
    # The reader answers what _parse raised: the handshake is still CONNECTING.
    hint = refusal(head(drop(b"Host")))
    assert ServerConnection().send(hint).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(LocalProtocolError, match="invalid response header"):
        ServerConnection().send(RejectConnection(status_code=401, headers=[(b"X", b"1\n2")]))


CLIENTS = {
    # What real clients send, with their own keys.
    "chrome": head(
        [
            (b"Host", b"127.0.0.1:8000"),
            (b"Connection", b"Upgrade"),
            (b"Pragma", b"no-cache"),
            (b"Cache-Control", b"no-cache"),
            (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36"),
            (b"Upgrade", b"websocket"),
            (b"Origin", b"http://127.0.0.1:8000"),
            (b"Sec-WebSocket-Version", b"13"),
            (b"Accept-Encoding", b"gzip, deflate, br, zstd"),
            (b"Accept-Language", b"en-US,en;q=0.9"),
            (b"Sec-WebSocket-Key", b"x3JJHMbDL1EzLkh9GBhXDw=="),
            (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
        ],
        b"GET /ws?token=abc HTTP/1.1",
    ),
    "firefox": head(
        [
            (b"Host", b"localhost:8000"),
            (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101"),
            (b"Accept", b"*/*"),
            (b"Sec-WebSocket-Version", b"13"),
            (b"Origin", b"http://localhost:8000"),
            (b"Sec-WebSocket-Protocol", b"wsroute.v1, chat"),
            (b"Sec-WebSocket-Extensions", b"permessage-deflate"),
            (b"Sec-WebSocket-Key", b"AQIDBAUGBwgJCgsMDQ4PEC=="),
            (b"Connection", b"keep-alive, Upgrade"),
            (b"Upgrade", b"websocket"),
        ],
        b"GET / HTTP/1.1",
    ),
}


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_same_request_as_wsprotos_own_handshake(name: str) -> None:
    data = CLIENTS[name]
    reference = WSConnection(ConnectionType.SERVER)
    reference.receive_data(data)
    expected = list(reference.events())
    ws, events = receive(data)
    assert events == expected
    assert ws.send(AcceptConnection()) == reference.send(AcceptConnection())


def test_a_wsproto_client_opens_a_connection_with_our_answer() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    request = client.send(Request(host="127.0.0.1", target="/ws", subprotocols=["v2", "v1"]))
    ws, events = receive(request)
    assert [type(e) for e in events] == [Request]
    client.receive_data(ws.send(AcceptConnection(subprotocol="v1")))
    [opened] = client.events()
    assert isinstance(opened, AcceptConnection)
    assert opened.subprotocol == "v1"
    ws.receive_data(client.send(TextMessage(data="hello")))
    assert [e.data for e in ws.events() if isinstance(e, TextMessage)] == ["hello"]


def test_h11_reads_our_refusal() -> None:
    ws, _ = receive(head())
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    client.send(h11.EndOfMessage())
    answer = ws.send(
        RejectConnection(status_code=403, headers=[(b"Content-Length", b"2")], has_body=True)
    )
    client.receive_data(answer + ws.send(RejectData(data=b"no")))
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == 403
    assert client.next_event() == h11.Data(data=b"no")
    assert isinstance(client.next_event(), h11.EndOfMessage)
