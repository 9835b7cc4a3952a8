"""The upgrade request (``wsroute._request``): headers, path and query."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from wsroute import App, Connection, Headers, Request

from .wsclient import connect


def test_header_lookups_are_case_insensitive() -> None:
    headers = Headers([("X-Token", "abc"), ("Content-Type", "text/plain")])
    assert headers["x-token"] == "abc"
    assert headers["X-TOKEN"] == "abc"
    assert headers.get("content-type") == "text/plain"
    assert "CONTENT-TYPE" in headers
    assert headers.get("missing") is None
    assert headers.get("missing", "default") == "default"
    with pytest.raises(KeyError):
        headers["missing"]


def test_repeated_headers() -> None:
    headers = Headers([("Cookie", "a=1"), ("Host", "h"), ("cookie", "b=2"), ("COOKIE", "c=3")])
    assert headers["cookie"] == "a=1"
    assert headers.getall("Cookie") == ["a=1", "b=2", "c=3"]
    assert headers.getall("missing") == []
    assert len(headers) == 2
    assert list(headers) == ["cookie", "host"]
    assert dict(headers) == {"cookie": "a=1", "host": "h"}
    assert headers.items_all() == (
        ("cookie", "a=1"),
        ("host", "h"),
        ("cookie", "b=2"),
        ("cookie", "c=3"),
    )


def test_bytes_headers_are_decoded() -> None:
    headers = Headers([(b"X-Name", b"caf\xe9"), (b"Host", "example.com")])
    assert headers["x-name"] == "café"  # latin-1, as HTTP/1.1 headers are
    assert headers["host"] == "example.com"
    assert list(headers) == ["x-name", "host"]


def test_empty_headers() -> None:
    headers = Headers()
    assert len(headers) == 0
    assert list(headers) == []


def test_build_splits_path_and_query() -> None:
    request = Request.build("/ws?room=1&token=x&room=2")
    assert request.path == "/ws"
    assert request.query == {"room": "1", "token": "x"}
    assert request.query_items == (("room", "1"), ("token", "x"), ("room", "2"))
    assert len(request.headers) == 0
    assert request.remote is None
    assert request.subprotocols == ()


@pytest.mark.parametrize("target", ["", "?a=1"])
def test_build_empty_path_becomes_root(target: str) -> None:
    assert Request.build(target).path == "/"


def test_build_keeps_blank_values_and_decodes_escapes() -> None:
    request = Request.build("/ws?empty=&flag&name=a%20b+c&x=%E2%9C%93")
    assert request.query == {"empty": "", "flag": "", "name": "a b c", "x": "✓"}
    assert request.query_items == (("empty", ""), ("flag", ""), ("name", "a b c"), ("x", "✓"))


def test_build_without_query() -> None:
    request = Request.build("/chat/room")
    assert request.path == "/chat/room"
    assert request.query == {}
    assert request.query_items == ()


@pytest.mark.parametrize(
    "target", ["/", "/ws", "/a%20b", "//host/path", "/p#frag", "http://h/ws", "*", "/q?a=1"]
)
def test_build_gives_what_urlsplit_gives(target: str) -> None:
    # A plain path skips URL parsing; every other target must come out the same.
    parts = urlsplit(target)
    request = Request.build(target)
    assert request.path == (parts.path or "/")
    assert request.query_items == tuple(parse_qsl(parts.query, keep_blank_values=True))


def test_headers_given_as_a_generator_are_kept() -> None:
    headers = Headers((name, value) for name, value in [(b"X-A", b"1"), (b"x-a", b"2")])
    assert headers.getall("x-a") == ["1", "2"]
    assert dict(headers) == {"x-a": "1"}


def test_build_with_headers_remote_and_subprotocols() -> None:
    request = Request.build(
        "/ws",
        [(b"Sec-WebSocket-Protocol", b"v1, v2"), ("Origin", "https://a.example")],
        remote=("127.0.0.1", 5000),
        subprotocols=iter(["v1", "v2"]),
    )
    assert request.headers["origin"] == "https://a.example"
    assert request.headers["sec-websocket-protocol"] == "v1, v2"
    assert request.remote == ("127.0.0.1", 5000)
    assert request.subprotocols == ("v1", "v2")
    assert request.scheme == "ws"  # unless told
    assert Request.build("/ws", scheme="wss").scheme == "wss"


def test_request_is_frozen() -> None:
    request = Request.build("/ws")
    with pytest.raises(AttributeError):
        request.path = "/other"  # type: ignore[misc]


# -- in a served app, over a real socket ---------------------------------------------


async def test_request_metadata_reaches_handlers(serve):
    app = App()

    @app.direct("whoami")
    async def whoami(conn: Connection) -> dict[str, Any]:
        return {
            "path": conn.request.path,
            "query": dict(conn.request.query),
            "header": conn.request.headers.get("X-Test"),
            "remote": conn.request.remote[0] if conn.request.remote else None,
        }

    port = await serve(app)
    async with connect(port, "/ws?room=1&room=2", additional_headers={"X-Test": "yes"}) as c:
        assert (await c.request("whoami"))["data"] == {
            "path": "/ws",
            "query": {"room": "1"},
            "header": "yes",
            "remote": "127.0.0.1",
        }
