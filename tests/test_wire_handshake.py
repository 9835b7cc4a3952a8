"""The opening handshake, sans-IO (wsroute/_wire/handshake.py, client_handshake.py, headers.py).

Real sockets: tests/test_bad_input.py (refusals) and every other server test
(acceptance). Here: the exact requests, refusals and answers; agreement with
wsproto's (h11's) and the ``websockets`` library's own handshakes on the requests
real browsers and clients send; the client's side (``client_request``,
``ResponseReader``) against the same libraries' servers.
"""

from __future__ import annotations

import base64

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.headers import parse_extension, parse_subprotocol
from websockets.protocol import State as WebsocketsState
from websockets.server import ServerProtocol
from websockets.uri import parse_uri
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage

from wsroute._wire.client_handshake import Response, ResponseReader, client_request
from wsroute._wire.handshake import (
    NOT_AN_UPGRADE,
    PlainRequest,
    Refusal,
    RequestReader,
    UpgradeRequest,
    accept,
    refuse,
)
from wsroute._wire.headers import MAX_HEAD, Extension, accept_token, is_field_value, is_token
from wsroute._wire.protocol import Protocol

from .wirepeers import chunked

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # its answer
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


def lower(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower(), value) for name, value in headers]


def read(chunks: list[bytes], reader: RequestReader | None = None) -> UpgradeRequest | PlainRequest:
    """The request once the last chunk is in (and not before)."""
    reader = reader or RequestReader()
    for chunk in chunks[:-1]:
        assert reader.feed(chunk) is None
    request = reader.feed(chunks[-1])
    assert request is not None
    return request


def by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def refusal(data: bytes) -> Refusal:
    with pytest.raises(Refusal) as caught:
        RequestReader().feed(data)
    return caught.value


def drop(name: bytes) -> list[tuple[bytes, bytes]]:
    return [h for h in BASE if h[0] != name]


def masked_text(text: str) -> bytes:
    return Protocol(client=True, max_message_size=1).send_text(text)


# -- reading requests --------------------------------------------------------------


def test_accept_token_is_rfc_6455s_example() -> None:
    assert accept_token(KEY) == ACCEPT


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte by byte"])
def test_an_upgrade_request(split: bool) -> None:
    headers = [
        *BASE,
        (b"Sec-WebSocket-Protocol", b"chat.v2, chat.v1"),
        (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
        (b"Origin", b"https://app.example.test"),
        (b"Cookie", b"a=b;  c=d \t"),
    ]
    data = head(headers)
    request = read(by_byte(data) if split else [data])
    assert request == UpgradeRequest(
        target="/chat?x=1",
        headers=[*lower(headers[:-1]), (b"cookie", b"a=b;  c=d")],
        key=KEY,
        subprotocols=["chat.v2", "chat.v1"],
        extensions=[Extension("permessage-deflate", (("client_max_window_bits", None),))],
    )


def test_empty_lines_before_the_request_and_bare_line_feeds_are_read() -> None:
    request = read([b"\r\n", b"\n\r\n" + head().replace(b"\r\n", b"\n")])
    assert isinstance(request, UpgradeRequest)
    assert request.headers == lower(BASE)


def test_the_last_version_header_counts() -> None:
    """As other servers read it (a 13 after an 8 is accepted; see test_refusals)."""
    versions = [(b"Sec-WebSocket-Version", b"8"), (b"Sec-WebSocket-Version", b"13")]
    assert isinstance(read([head([*drop(b"Sec-WebSocket-Version"), *versions])]), UpgradeRequest)


def test_list_headers_are_token_lists() -> None:
    headers = [
        (b"Host", b"h"),
        (b"Upgrade", b"foo/1, WebSocket"),
        (b"Connection", b"keep-alive, upgrade"),
        (b"Connection", b"close"),
        (b"Sec-WebSocket-Protocol", b"a,, b ,c"),
        (b"Sec-WebSocket-Protocol", b"d"),
    ]
    request = read([head([*headers, *BASE[3:]])])
    assert isinstance(request, UpgradeRequest)
    assert request.subprotocols == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("values", "offers"),
    [
        pytest.param(
            [b"permessage-deflate; client_max_window_bits, x-webkit-deflate-frame"],
            [
                Extension("permessage-deflate", (("client_max_window_bits", None),)),
                Extension("x-webkit-deflate-frame", ()),
            ],
            id="Safari's",
        ),
        pytest.param(
            [b"permessage-deflate; server_no_context_takeover; client_max_window_bits=10"],
            [
                Extension(
                    "permessage-deflate",
                    (("server_no_context_takeover", None), ("client_max_window_bits", "10")),
                )
            ],
            id="parameters with and without values",
        ),
        pytest.param(
            [b'permessage-deflate; client_max_window_bits="10"'],
            [Extension("permessage-deflate", (("client_max_window_bits", "10"),))],
            id="a quoted value",
        ),
        pytest.param(
            [b"a ; b = 1 ;c", b"d"],
            [Extension("a", (("b", "1"), ("c", None))), Extension("d", ())],
            id="two headers, spaces",
        ),
        pytest.param([b"a,, b"], [Extension("a", ()), Extension("b", ())], id="empty elements"),
    ],
)
def test_extension_offers(values: list[bytes], offers: list[Extension]) -> None:
    request = read([head([*BASE, *((b"Sec-WebSocket-Extensions", v) for v in values)])])
    assert isinstance(request, UpgradeRequest)
    assert request.extensions == offers


def test_bytes_after_the_request_are_kept() -> None:
    """Frames a client sent before the answer (RFC 6455 forbids it; some do) are the
    connection's first bytes."""
    second = masked_text(" and more")
    early = masked_text("early") + second[:3]
    reader = RequestReader()
    assert isinstance(read([head() + early], reader), UpgradeRequest)
    assert reader.rest == early
    server = Protocol(max_message_size=100)
    assert server.receive_data(reader.rest + second[3:]) == [
        "early",
        " and more",
    ]


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
    reader = RequestReader()
    data = head(headers, line=b"GET /page?x=1 HTTP/1.1") + b"GET /again HTTP/1.1\r\n"
    assert read([data], reader) == PlainRequest("GET", "/page?x=1", lower(headers))
    assert reader.rest == b"GET /again HTTP/1.1\r\n"  # not read: one answer, then close


@pytest.mark.parametrize("method", [b"POST", b"HEAD", b"OPTIONS", b"DELETE", b"BREW"])
def test_a_plain_request_of_any_method_is_reported(method: bytes) -> None:
    # The runtime answers 405 to methods other than GET and HEAD; an upgrade
    # request must still be a GET.
    headers = [(b"Host", b"h"), (b"Content-Length", b"2")]
    reader = RequestReader()
    request = read([head(headers, line=method + b" /form HTTP/1.1") + b"{}"], reader)
    assert request == PlainRequest(method.decode(), "/form", lower(headers))
    assert reader.rest == b"{}"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(head(drop(b"Upgrade")), 400, id="no Upgrade"),
        pytest.param(head([*drop(b"Upgrade"), (b"Upgrade", b"h2c")]), 400, id="Upgrade h2c"),
        pytest.param(head(drop(b"Connection")), 400, id="no Connection"),
        pytest.param(
            head([*drop(b"Connection"), (b"Connection", b"keep-alive")]),
            400,
            id="Connection without upgrade",
        ),
        pytest.param(head(drop(b"Sec-WebSocket-Version")), 400, id="no version"),
        pytest.param(
            head([*drop(b"Sec-WebSocket-Version"), (b"Sec-WebSocket-Version", b"8")]),
            426,
            id="version 8",
        ),
        pytest.param(
            head([*drop(b"Sec-WebSocket-Version"), (b"Sec-WebSocket-Version", b"13, 8")]),
            426,
            id="version 13, 8",
        ),
        pytest.param(head([*BASE, (b"Sec-WebSocket-Version", b"8")]), 426, id="version 13, then 8"),
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
        pytest.param(head([*drop(b"Host"), (b"Host", b"h\xc3\xa9")]), 400, id="non-ASCII Host"),
        pytest.param(head([*BASE, (b"Content-Length", b"5")]), 400, id="a body"),
        pytest.param(head([*BASE, (b"Content-Length", b"0")], b"POST / HTTP/1.1"), 400, id="POST"),
        pytest.param(head(line=b"get / HTTP/1.1"), 400, id="lower-case get"),
        pytest.param(head([*BASE, (b"Transfer-Encoding", b"chunked")]), 400, id="chunked body"),
        pytest.param(head(line=b"GET / HTTP/1.0"), 400, id="HTTP/1.0"),
        pytest.param(head(line=b"GET / HTTP/2.0"), 400, id="HTTP/2.0"),
        pytest.param(head(line=b"GET / HTTP/1.1 extra"), 400, id="three spaces"),
        pytest.param(head(line=b"GET  / HTTP/1.1"), 400, id="two spaces"),
        pytest.param(head(line=b"GET /\xc3\xa9 HTTP/1.1"), 400, id="non-ASCII target"),
        pytest.param(head([*BASE, (b"X-Folded", b"a\r\n b")]), 400, id="folded header"),
        pytest.param(head([*BASE, (b"X-Bad", b"a\x00b")]), 400, id="NUL in a value"),
        pytest.param(head([*BASE, (b"X-Bad", b"a\x7fb")]), 400, id="DEL in a value"),
        pytest.param(head([*BASE, (b"X-Bad", b"a\rb")]), 400, id="CR in a value"),
        pytest.param(head([*BASE, (b"X-Bad ", b"v")]), 400, id="space before the colon"),
        pytest.param(head([*BASE, (b"X Bad", b"v")]), 400, id="space in a name"),
        pytest.param(head([*BASE, (b"", b"v")]), 400, id="empty name"),
        pytest.param(
            head([*BASE, (b"no colon", b"")]).replace(b"no colon: ", b"nocolon"), 400, id="no colon"
        ),
        pytest.param(
            head([*drop(b"Connection"), (b"Connection", b"upgr\xe4de")]), 400, id="non-ASCII list"
        ),
        pytest.param(head([*BASE, (b"X-Pad", b"a" * MAX_HEAD)]), 431, id="head too long"),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, id="TLS"),
    ],
)
def test_refusals(data: bytes, status: int) -> None:
    refused = refusal(data)
    assert refused.status == status
    assert refused.message
    if status == 426:
        assert refused.headers == [(b"Sec-WebSocket-Version", b"13")]
    elif status == 431:  # a valid request may be too large: say what the limit is
        assert refused.headers == [(b"Content-Type", b"text/plain; charset=utf-8")]
        assert refused.body == (
            b"request head too large: it exceeds the limit of 16 KiB (16384 bytes) on the"
            b" request line and headers\n"
        )
    else:
        assert (refused.headers, refused.body) == ([], b"")
    # Whatever the reads, the same answer.
    with pytest.raises(Refusal) as caught:
        read(by_byte(data))
    assert caught.value.status == status


def test_not_http_is_refused_before_a_line_ends() -> None:
    refused = refusal(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")  # a TLS ClientHello
    assert refused.status == 400
    reader = RequestReader()
    assert reader.feed(b"GET /" + b"a" * 1000) is None  # plausible so far: keep reading
    with pytest.raises(Refusal):
        reader.feed(b"\x00")  # not in a request line


def test_a_head_without_end_is_refused_once_over_the_limit() -> None:
    reader = RequestReader()
    assert reader.feed(head()[:-2]) is None
    for _ in range((MAX_HEAD - len(head())) // 1008):
        assert reader.feed(b"X-Pad: " + b"a" * 999 + b"\r\n") is None
    with pytest.raises(Refusal) as caught:
        reader.feed(b"X-Pad: " + b"a" * 999 + b"\r\n")
    assert caught.value.status == 431


def padded(size: int) -> bytes:
    """An upgrade request of ``size`` bytes in all."""
    data = head([*BASE, (b"X-Pad", b"")])
    return head([*BASE, (b"X-Pad", b"a" * (size - len(data)))])


def test_a_head_of_max_head_bytes_is_read() -> None:
    assert len(padded(MAX_HEAD)) == MAX_HEAD
    assert isinstance(read([padded(MAX_HEAD)]), UpgradeRequest)
    assert isinstance(read(chunked(padded(MAX_HEAD), [1000] * 16)), UpgradeRequest)
    assert isinstance(read(by_byte(padded(MAX_HEAD))), UpgradeRequest)
    assert refusal(padded(MAX_HEAD + 4)).status == 431


@pytest.mark.parametrize("size", [MAX_HEAD + 2, MAX_HEAD + 3])
def test_a_head_at_the_limit_reads_the_same_in_any_reads(size: int) -> None:
    data = padded(size)
    assert isinstance(read([data]), UpgradeRequest)
    assert isinstance(read([data[:-1], data[-1:]]), UpgradeRequest)


# -- answering -----------------------------------------------------------------------


def upgrade(headers: list[tuple[bytes, bytes]] = BASE) -> UpgradeRequest:
    request = read([head(headers)])
    assert isinstance(request, UpgradeRequest)
    return request


def test_accept() -> None:
    request = upgrade([*BASE, (b"Sec-WebSocket-Protocol", b"a, b")])
    assert accept(request) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n\r\n"
    )
    assert accept(
        request,
        subprotocol="b",
        extensions="permessage-deflate; server_no_context_takeover",
        headers=[(b"X-Server", b"wsroute")],
    ) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n"
        b"Sec-WebSocket-Protocol: b\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        b"X-Server: wsroute\r\n\r\n"
    )


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"subprotocol": "z"}, id="subprotocol not offered"),
        pytest.param({"subprotocol": "A"}, id="subprotocol in another case"),
        pytest.param({"headers": [(b"X-Evil", b"a\r\nSet-Cookie: x")]}, id="CRLF in a value"),
        pytest.param({"headers": [(b"X-Evil", b"a\nb")]}, id="LF in a value"),
        pytest.param({"headers": [(b"X-Evil: a\r\nB", b"c")]}, id="CRLF in a name"),
        pytest.param({"headers": [(b"", b"c")]}, id="empty name"),
        pytest.param({"extensions": "a\r\nSet-Cookie: x"}, id="CRLF in extensions"),
        pytest.param({"extensions": "d\xe9flate"}, id="non-ASCII extensions"),
    ],
)
def test_accept_refuses(options: dict[str, object]) -> None:
    request = upgrade([*BASE, (b"Sec-WebSocket-Protocol", b"a")])
    with pytest.raises(ValueError):
        accept(request, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            refuse(400),
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            id="400",
        ),
        pytest.param(
            refuse(426, Refusal("old", 426).headers),
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n",
            id="426",
        ),
        pytest.param(
            refuse(401, [(b"WWW-Authenticate", b"Bearer")], b"who"),
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nwho",
            id="401 with a body",
        ),
        pytest.param(
            refuse(499),
            b"HTTP/1.1 499 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            id="unknown status",
        ),
    ],
)
def test_refuse(answer: bytes, expected: bytes) -> None:
    assert answer == expected


@pytest.mark.parametrize(
    "headers",
    [[(b"X", b"1\n2")], [(b"X", b"1\r\n\r\nbody")], [(b"X Y", b"1")], [(b"X:", b"1")]],
)
def test_refuse_allows_no_header_injection(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ValueError):
        refuse(401, headers)


def test_h11_reads_our_refusal() -> None:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    client.send(h11.EndOfMessage())
    client.receive_data(refuse(403, [(b"X-Why", b"origin")], NOT_AN_UPGRADE))
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert (response.status_code, response.reason) == (403, b"Forbidden")
    assert (b"x-why", b"origin") in response.headers
    assert client.next_event() == h11.Data(data=NOT_AN_UPGRADE)
    assert isinstance(client.next_event(), h11.EndOfMessage)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        (b"X-Good", True),
        (b"a!#$%&'*+-.^_`|~9", True),
        (b"", False),
        (b"X Y", False),
        (b"X:", False),
        (b"X\r", False),
        (b"\xc3\xa9", False),
    ],
)
def test_is_token(name: bytes, valid: bool) -> None:
    assert is_token(name) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (b"", True),
        (b"a b\tc", True),
        (b"caf\xc3\xa9", True),
        (b"a\rb", False),
        (b"a\nb", False),
        (b"a\x00b", False),
        (b"a\x7fb", False),
        (b"a\x1fb", False),
    ],
)
def test_is_field_value(value: bytes, valid: bool) -> None:
    assert is_field_value(value) is valid


# -- the requests real clients send: the same reading as wsproto's and websockets' -----


def client_heads() -> dict[str, bytes]:
    """What browsers and client libraries send, with their own keys; the libraries'
    generated here by the libraries themselves."""
    heads = {
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
                (b"Sec-WebSocket-Key", b"ffUr7ohQrTFZo9r0ZV8A0A=="),
                (b"Connection", b"keep-alive, Upgrade"),
                (b"Sec-Fetch-Dest", b"empty"),
                (b"Sec-Fetch-Mode", b"websocket"),
                (b"Sec-Fetch-Site", b"same-origin"),
                (b"Pragma", b"no-cache"),
                (b"Cache-Control", b"no-cache"),
                (b"Upgrade", b"websocket"),
            ],
            b"GET / HTTP/1.1",
        ),
        "safari": head(
            [
                (b"Host", b"localhost:8000"),
                (b"Accept", b"*/*"),
                (b"Upgrade", b"websocket"),
                (b"Sec-WebSocket-Version", b"13"),
                (b"Origin", b"http://localhost:8000"),
                (b"Sec-WebSocket-Key", b"QesI+4e7n2UtVMSsWGQSKw=="),
                (b"Connection", b"Upgrade"),
                (
                    b"Sec-WebSocket-Extensions",
                    b"permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
                ),
                (b"Sec-WebSocket-Protocol", b"chat"),
                (b"Accept-Language", b"en-GB,en;q=0.9"),
                (b"Pragma", b"no-cache"),
                (b"Cache-Control", b"no-cache"),
                (
                    b"User-Agent",
                    b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
                    b" (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
                ),
                (b"Accept-Encoding", b"gzip, deflate"),
            ],
            b"GET /live/feed HTTP/1.1",
        ),
        "node ws": head(
            [
                (b"Sec-WebSocket-Version", b"13"),
                (b"Sec-WebSocket-Key", b"FNOxYjfq/j17HK/xPOdcag=="),
                (b"Connection", b"Upgrade"),
                (b"Upgrade", b"websocket"),
                (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
                (b"Host", b"127.0.0.1:8000"),
            ],
            b"GET /ws HTTP/1.1",
        ),
    }
    # websockets.connect: permessage-deflate offered by default.
    client = ClientProtocol(
        parse_uri("ws://localhost:8000/ws?room=1"),
        extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=True)],
        subprotocols=["v2", "v1"],
    )
    client.send_request(client.connect())
    heads["websockets"] = b"".join(client.data_to_send())
    # trio-websocket: wsproto's client handshake, host with its port.
    heads["trio-websocket"] = WSConnection(ConnectionType.CLIENT).send(
        Request(
            host="127.0.0.1:8000",
            target="/ws",
            subprotocols=["wsroute.v1"],
            extra_headers=[(b"Origin", b"http://127.0.0.1:8000")],
        )
    )
    return heads


CLIENTS = client_heads()


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_same_request_as_wsprotos_own_handshake(name: str) -> None:
    data = CLIENTS[name]
    request = read([data])
    assert isinstance(request, UpgradeRequest)
    reference = WSConnection(ConnectionType.SERVER)
    reference.receive_data(data)
    [expected] = reference.events()
    assert isinstance(expected, Request)
    assert request.target == expected.target
    assert request.subprotocols == expected.subprotocols
    assert [e.name for e in request.extensions] == [
        offer.split(";")[0].strip() for offer in expected.extensions
    ]
    assert dict(request.headers)[b"host"].decode() == expected.host
    # The same 101, byte for byte, with and without a subprotocol.
    chosen = request.subprotocols[-1] if request.subprotocols else None
    assert accept(request, subprotocol=chosen) == reference.send(
        AcceptConnection(subprotocol=chosen)
    )


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_same_request_as_h11_and_websockets_read(name: str) -> None:
    data = CLIENTS[name]
    request = read([data])
    assert isinstance(request, UpgradeRequest)
    # h11: the same target and headers (names in lower case, values trimmed).
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    parsed = server.next_event()
    assert isinstance(parsed, h11.Request)
    assert (parsed.method, parsed.target) == (b"GET", request.target.encode())
    assert list(parsed.headers) == request.headers
    # websockets: the same offers, and the same accept token in its 101.
    websockets_server = ServerProtocol(subprotocols=request.subprotocols[-1:] or None)
    websockets_server.receive_data(data)
    [theirs] = websockets_server.events_received()
    offers = [parse_extension(v) for v in theirs.headers.get_all("Sec-WebSocket-Extensions")]
    assert [(e.name, list(e.params)) for e in request.extensions] == [
        offer for value in offers for offer in value
    ]
    protocols = [parse_subprotocol(v) for v in theirs.headers.get_all("Sec-WebSocket-Protocol")]
    assert request.subprotocols == [p for value in protocols for p in value]
    answer = websockets_server.accept(theirs)
    assert answer.status_code == 101
    assert answer.headers["Sec-WebSocket-Accept"] == accept_token(request.key).decode()


def test_a_wsproto_client_opens_a_connection_with_our_answer() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    request = read(
        [client.send(Request(host="127.0.0.1", target="/ws", subprotocols=["v2", "v1"]))]
    )
    assert isinstance(request, UpgradeRequest)
    client.receive_data(accept(request, subprotocol="v1"))
    [opened] = client.events()
    assert isinstance(opened, AcceptConnection)
    assert opened.subprotocol == "v1"
    server = Protocol(max_message_size=100)
    assert server.receive_data(client.send(TextMessage(data="hello"))) == ["hello"]


def test_a_websockets_client_opens_a_connection_with_our_answer() -> None:
    client = ClientProtocol(parse_uri("ws://127.0.0.1/ws"), subprotocols=["v2", "v1"])
    client.send_request(client.connect())
    reader = RequestReader()
    request = read([b"".join(client.data_to_send())], reader)
    assert isinstance(request, UpgradeRequest)
    server = Protocol(max_message_size=100)
    client.receive_data(accept(request, subprotocol="v2") + server.send_text("welcome"))
    [response, welcome] = client.events_received()
    assert response.status_code == 101
    assert client.state is WebsocketsState.OPEN
    assert client.subprotocol == "v2"
    assert welcome.data == b"welcome"
    client.send_text(b"hi")
    assert server.receive_data(b"".join(client.data_to_send())) == ["hi"]


def test_wsproto_and_websockets_read_our_refusals() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    client.send(Request(host="h", target="/"))
    client.receive_data(refuse(403, [(b"X-Why", b"origin")], b"no"))
    rejected = next(iter(client.events()))
    assert isinstance(rejected, RejectConnection)
    assert rejected.status_code == 403

    websockets_client = ClientProtocol(parse_uri("ws://h/"))
    websockets_client.send_request(websockets_client.connect())
    websockets_client.receive_data(refuse(426, Refusal("old", 426).headers))
    [response] = websockets_client.events_received()
    assert response.status_code == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"


# -- the client's side ---------------------------------------------------------------


def test_client_request() -> None:
    data = client_request(
        "example.test:8000",
        "/chat?x=1",
        KEY,
        subprotocols=["v2", "v1"],
        headers=[(b"Origin", b"https://example.test")],
    )
    assert data == (
        b"GET /chat?x=1 HTTP/1.1\r\nHost: example.test:8000\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13"
        b"\r\nSec-WebSocket-Protocol: v2, v1\r\nOrigin: https://example.test\r\n\r\n"
    )
    with pytest.raises(ValueError):
        client_request("h", "/", KEY, headers=[(b"X", b"1\r\nY: 2")])


tokens = st.text("abcxyzABC019-._~!", min_size=1, max_size=12)
hosts = st.builds(
    lambda name, port: name + (f":{port}" if port else ""),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=20),
    st.one_of(st.none(), st.integers(1, 65535)),
)
targets = st.text("abcXYZ019/?=&%-._~!$'()*+,;:@", max_size=30).map(lambda t: "/" + t)
values = st.text("abc XYZ019/?=&%-._~!$'()*+,;:@\"", max_size=20).map(lambda v: v.strip().encode())
keys = st.binary(min_size=16, max_size=16).map(base64.b64encode)


@settings(max_examples=200, deadline=None)
@given(
    hosts,
    targets,
    keys,
    st.lists(tokens, max_size=3),
    st.lists(st.tuples(tokens.map(lambda t: ("X-" + t).encode()), values), max_size=3),
)
def test_client_request_reads_back(
    host: str,
    target: str,
    key: bytes,
    subprotocols: list[str],
    headers: list[tuple[bytes, bytes]],
) -> None:
    data = client_request(host, target, key, subprotocols=subprotocols, headers=headers)
    request = read([data])
    assert isinstance(request, UpgradeRequest)
    assert (request.target, request.key, request.subprotocols) == (target, key, subprotocols)
    assert request.headers[0] == (b"host", host.encode())
    assert request.headers[len(request.headers) - len(headers) :] == lower(headers)
    # And h11 reads it too.
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    parsed = server.next_event()
    assert isinstance(parsed, h11.Request)
    assert list(parsed.headers) == request.headers


# -- any split, same result ----------------------------------------------------------

#: Requests and what follows them; valid ones, plain ones and refused ones.
STREAMS = [
    head(),
    head([*BASE, (b"Sec-WebSocket-Protocol", b"a, b")]) + masked_text("early"),
    b"\r\n\r\n" + head().replace(b"\r\n", b"\n"),
    head([(b"Host", b"h")], line=b"POST /form HTTP/1.1") + b"body",
    head(drop(b"Host")),
    head([*BASE, (b"X-Bad", b"a\rb")]),
    head(line=b"GET / HTTP/1.0"),
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
]


def outcome(chunks: list[bytes]) -> object:
    """The request and every byte after it, or the status of the refusal."""
    reader = RequestReader()
    try:
        for n, chunk in enumerate(chunks):
            request = reader.feed(chunk)
            if request is not None:
                return request, reader.rest + b"".join(chunks[n + 1 :])
    except Refusal as refused:
        return refused.status
    return None


requests = st.one_of(
    st.sampled_from([*STREAMS, *CLIENTS.values()]),
    st.builds(
        lambda host, target, key, subprotocols, after: (
            client_request(host, target, key, subprotocols=subprotocols) + after
        ),
        hosts,
        targets,
        keys,
        st.lists(tokens, max_size=3),
        st.binary(max_size=20),
    ),
)


@settings(max_examples=300, deadline=None)
@given(requests, st.lists(st.integers(1, 40), max_size=20))
def test_any_split_of_a_request_reads_the_same(data: bytes, cuts: list[int]) -> None:
    chunks = chunked(data, cuts)
    ours = outcome(chunks)
    assert ours == outcome([data])
    assert ours is not None


def test_response_reader_reads_a_101_and_the_frames_after_it() -> None:
    frames = Protocol(max_message_size=1).send_text("first")
    data = accept(upgrade()) + frames
    reader = ResponseReader(KEY)
    end = data.index(b"\r\n\r\n") + 4
    for i in range(end - 1):
        assert reader.feed(data[i : i + 1]) is None
    response = reader.feed(data[end - 1 :])
    assert response == Response(
        101,
        [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", ACCEPT),
        ],
        b"",
    )
    assert response.header(b"sec-websocket-accept") == ACCEPT
    assert response.header(b"sec-websocket-protocol") is None
    assert reader.rest == frames


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(accept(upgrade()).replace(ACCEPT, accept_token(b"x" * 24)), id="wrong token"),
        pytest.param(accept(upgrade()).replace(b"Sec-WebSocket-Accept", b"X"), id="no token"),
        pytest.param(b"HTTP/1.0 101 Switching Protocols\r\n\r\n", id="HTTP/1.0"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", id="not HTTP"),
        pytest.param(b"HTTP/1.1 abc Nope\r\n\r\n", id="status not a number"),
    ],
)
def test_response_reader_refuses(answer: bytes) -> None:
    with pytest.raises(ValueError):
        ResponseReader(KEY).feed(answer)


def test_response_reader_refuses_an_endless_head() -> None:
    reader = ResponseReader(KEY)
    assert reader.feed(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(ValueError):
        reader.feed(b"X: " + b"a" * MAX_HEAD)


def test_response_reader_reads_a_refusal_with_a_length_in_pieces() -> None:
    data = refuse(403, [(b"X-Why", b"origin")], b"forbidden") + b"ignored"
    reader = ResponseReader(KEY)
    end = data.index(b"forbidden") + len(b"forbidden")
    for chunk in chunked(data[: end - 1], [7] * (end // 7)):
        assert reader.feed(chunk) is None
    response = reader.feed(data[end - 1 :])
    assert response == Response(
        403,
        [(b"x-why", b"origin"), (b"content-length", b"9"), (b"connection", b"close")],
        b"forbidden",
    )


def test_response_reader_reads_a_refusal_without_a_length_to_the_end() -> None:
    reader = ResponseReader(KEY)
    assert reader.feed_eof() is None  # nothing yet
    assert reader.feed(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\nbusy") is None
    assert reader.feed(b", later") is None
    assert reader.feed_eof() == Response(503, [(b"retry-after", b"1")], b"busy, later")


def test_response_reader_reads_wsprotos_and_websockets_answers() -> None:
    data = client_request("h", "/", KEY)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(data)
    next(iter(server.events()))
    response = ResponseReader(KEY).feed(server.send(AcceptConnection()))
    assert response is not None and response.status == 101

    websockets_server = ServerProtocol()
    websockets_server.receive_data(data)
    [request] = websockets_server.events_received()
    websockets_server.send_response(websockets_server.accept(request))
    response = ResponseReader(KEY).feed(b"".join(websockets_server.data_to_send()))
    assert response is not None and response.status == 101

    websockets_server = ServerProtocol()
    websockets_server.receive_data(data)
    websockets_server.send_response(websockets_server.reject(403, "Forbidden by policy\n"))
    response = ResponseReader(KEY).feed(b"".join(websockets_server.data_to_send()))
    assert response is not None
    assert (response.status, response.body) == (403, b"Forbidden by policy\n")


def test_response_reader_refuses_a_negative_length() -> None:
    with pytest.raises(ValueError):
        ResponseReader(KEY).feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: -3\r\n\r\nabcdef")


@pytest.mark.parametrize(
    "headers",
    [[], [(b"Host", b"a"), (b"Host", b"b")]],
    ids=["no Host", "two Hosts"],
)
def test_a_plain_request_needs_exactly_one_host(headers: list[tuple[bytes, bytes]]) -> None:
    # RFC 9112 section 3.2: a server answers 400 to an HTTP/1.1 request without one.
    assert refusal(head(headers, line=b"GET /page HTTP/1.1")).status == 400


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("h", "/x HTTP/1.1\r\nX-Injected: 1\r\nY:"),
        ("h\r\nX: 1", "/"),
        ("h", "/a b"),
        ("h", "/é"),
        ("", "/"),
    ],
)
def test_client_request_refuses_what_would_smuggle_a_header(host: str, target: str) -> None:
    with pytest.raises(ValueError, match="invalid request"):
        client_request(host, target, KEY)


def answer_101(*extra: bytes, drop: bytes = b"") -> bytes:
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_token(KEY),
        *extra,
    ]
    return b"\r\n".join(line for line in lines if not (drop and line.startswith(drop))) + (
        b"\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (answer_101(drop=b"Upgrade:"), "Upgrade: websocket"),
        (answer_101(drop=b"Connection:"), "Connection: Upgrade"),
        (answer_101(b"Sec-WebSocket-Protocol: other"), "not offered"),
    ],
    ids=["no Upgrade", "no Connection", "subprotocol not offered"],
)
def test_response_reader_fails_a_101_rfc_6455_says_a_client_must_fail(
    data: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ResponseReader(KEY, ["chat"]).feed(data)


def test_response_reader_takes_an_offered_subprotocol() -> None:
    answer = ResponseReader(KEY, ["chat"]).feed(answer_101(b"Sec-WebSocket-Protocol: chat"))
    assert answer is not None and answer.header(b"sec-websocket-protocol") == b"chat"


@pytest.mark.parametrize("length", [b"-3", b"1_0", b"+3", b" "])
def test_response_reader_refuses_a_content_length_that_is_not_digits(length: bytes) -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        ResponseReader(KEY).feed(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: " + length + b"\r\n\r\n"
        )
