"""Plain HTTP routes (``wsroute._http``): answers and the route table, sans-IO; and
over real sockets, a GET route next to the WebSocket endpoint on one port."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from wsroute import App, RegistrationError, Request, Response

from .rawws import http_exchange, open_raw
from .wsclient import connect

Serve = Callable[[App], Awaitable[int]]


# -- answers -------------------------------------------------------------------------


def test_a_text_answer() -> None:
    assert Response("héllo\n").encode() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 7\r\nConnection: close\r\n\r\nh\xc3\xa9llo\n"
    )


def test_a_head_answer_has_the_length_but_not_the_body() -> None:
    wire = Response(b"\x00\x01", content_type="image/png").encode(head=True)
    assert wire.endswith(b"Content-Length: 2\r\nConnection: close\r\n\r\n")
    assert b"Content-Type: image/png\r\n" in wire


def test_wsroute_sets_length_and_connection_itself() -> None:
    wire = Response("x", headers={"Content-Length": "99", "Connection": "keep-alive"}).encode()
    assert wire.count(b"Content-Length") == 1 and b"Content-Length: 1\r\n" in wire
    assert wire.count(b"Connection") == 1 and b"Connection: close\r\n" in wire


def test_a_304_has_no_body_and_no_length() -> None:
    wire = Response(b"", 304, headers={"ETag": '"1"'}).encode()
    assert wire.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b"Content-Length" not in wire and wire.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((b"", 101), {}, ValueError),
        ((b"", 600), {}, ValueError),
        ((b"", True), {}, ValueError),
        ((42,), {}, TypeError),
        (("x",), {"headers": {"X-Bad": "a\r\nSet-Cookie: x"}}, ValueError),
        (("x",), {"headers": {"Bad Name": "v"}}, ValueError),
        (("x",), {"headers": {"X-Emoji": "🙂"}}, ValueError),
    ],
)
def test_invalid_answers_are_refused_when_made(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Response(*args, **kwargs)


# -- registration --------------------------------------------------------------------


async def page() -> str:
    return "page"


def test_a_path_has_one_route() -> None:
    app = App()
    app.get("/page")(page)
    with pytest.raises(RegistrationError, match="'/page' is already answered by"):
        app.get("/page")(page)


def test_the_client_path_is_taken_unless_moved() -> None:
    with pytest.raises(RegistrationError, match="already answered by the JavaScript client"):
        App().get("/wsroute.js")(page)
    App(client_path="/js/wsroute.js").get("/wsroute.js")(page)
    App(client_path=None).get("/wsroute.js")(page)


@pytest.mark.parametrize("path", ["page", "", "/a?b", "/a#b", 3])
def test_a_path_starts_with_a_slash(path: Any) -> None:
    with pytest.raises(RegistrationError, match="starts with '/'"):
        App().get(path)(page)


@pytest.mark.parametrize("path", ["/items/{id}", "/items/{id}/name", "/a}"])
def test_a_path_has_no_parameters(path: str) -> None:
    with pytest.raises(RegistrationError, match=r"path parameter.* read request\.query"):
        App().get(path)(page)
    with pytest.raises(RegistrationError, match="path parameter"):
        App().add_static(path, ".")


def test_a_path_is_written_as_clients_send_it() -> None:
    with pytest.raises(RegistrationError, match=r"percent-encode ' ' 'é'.*'/caf%C3%A9%20x'"):
        App().get("/café x")(page)
    App().get("/caf%C3%A9%20x")(page)


def test_a_get_route_is_async_and_takes_at_most_the_request() -> None:
    def sync(request: Request) -> str:
        return ""

    async def two(request: Request, other: int) -> str:
        return ""

    with pytest.raises(RegistrationError, match="must be an async function"):
        App().get("/a")(sync)
    with pytest.raises(RegistrationError, match="at most one parameter"):
        App().get("/a")(two)


async def takes_int(a: int) -> str:
    return str(a)


async def takes_args(*args: Any) -> str:
    return ""


async def takes_kwargs(**kwargs: Any) -> str:
    return ""


async def takes_str_or_int(q: str | int) -> str:
    return ""


@pytest.mark.parametrize(
    ("fn", "error"),
    [
        (takes_int, r"takes 'a' annotated int, but a GET route is passed only the Request"),
        (takes_str_or_int, r"takes 'q' annotated str \| int, but a GET route is passed only"),
        (takes_args, r"\*args and \*\*kwargs are not supported"),
        (takes_kwargs, r"\*args and \*\*kwargs are not supported"),
    ],
)
def test_a_get_route_takes_the_request_and_nothing_else(fn: Any, error: str) -> None:
    # Not a parameter bound from the query string: the handler would be passed the
    # Request as `a`. The message says how to write it.
    fix = r"write `async def \w+\(request: Request\) -> Response`.*request\.query"
    with pytest.raises(RegistrationError, match=f"GET route '/a': .*{error}.*{fix}"):
        App().get("/a")(fn)


async def test_a_request_parameter_may_be_loose_or_keyword_only(serve: Serve) -> None:
    async def loose(request) -> str:  # type: ignore[no-untyped-def]
        return str(request.path)

    async def anything(request: Any) -> str:
        return str(request.path)

    async def optional(request: Request | None) -> str:
        return str(request and request.path)

    async def keyword(*, request: Request) -> str:
        return request.path

    app = App()
    for fn in (loose, anything, optional, keyword):
        app.get(f"/{fn.__name__}")(fn)
    port = await serve(app)
    for fn in (loose, anything, optional, keyword):
        answer = await http_exchange(port, get(f"/{fn.__name__}"))
        assert (answer.status, answer.body) == (200, f"/{fn.__name__}".encode()), fn


# -- over a real socket ----------------------------------------------------------------


def make_app() -> App:
    app = App()

    @app.get("/health")
    async def health() -> str:
        return "ok\n"

    @app.get("/echo")
    async def echo(request: Request) -> Response:
        return Response(
            f"{request.path} {request.query.get('q')} {request.headers['x-test']}",
            headers={"X-Seen": "yes"},
        )

    @app.get("/broken")
    async def broken(request: Request) -> str:
        raise RuntimeError("oops")

    @app.get("/wrong")
    async def wrong() -> Any:
        return {"not": "a response"}

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    return app


def get(target: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_get_routes_and_websockets_share_the_port(serve: Serve) -> None:
    port = await serve(make_app())
    answer = await http_exchange(port, get("/health"))
    assert (answer.status, answer.body) == (200, b"ok\n")
    answer = await http_exchange(port, get("/echo?q=1", "X-Test: t"))
    assert (answer.status, answer.body, answer.headers["x-seen"]) == (200, b"/echo 1 t", "yes")
    # The same path upgraded is a WebSocket, never the route.
    async with connect(port, "/health") as client:
        assert (await client.request("ping", id=1))["data"] == "pong"
    async with open_raw(port, "/echo") as raw:
        await raw.send_json({"type": "ping", "id": 2})
        assert (await raw.recv_json())["data"] == "pong"


async def test_head_gets_the_headers_only(serve: Serve) -> None:
    port = await serve(make_app())
    answer = await http_exchange(port, get("/health", method="HEAD"))
    assert (answer.status, answer.headers["content-length"], answer.body) == (200, "3", b"")


async def test_other_methods_get_405(serve: Serve) -> None:
    port = await serve(make_app())
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        answer = await http_exchange(port, get("/health", "Content-Length: 0", method=method))
        assert (answer.status, answer.headers["allow"]) == (405, "GET, HEAD"), method


async def test_an_unrouted_path_says_it_is_a_websocket_endpoint(serve: Serve) -> None:
    port = await serve(make_app())
    answer = await http_exchange(port, get("/nothing-here"))
    assert answer.status == 426 and answer.headers["upgrade"] == "websocket"
    assert answer.body.startswith(b"This is a WebSocket endpoint")


async def test_a_failing_route_is_a_500_and_the_server_goes_on(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    port = await serve(make_app())
    for path in ("/broken", "/wrong"):
        answer = await http_exchange(port, get(path))
        assert (answer.status, answer.body) == (500, b"internal server error\n")
    assert "GET from 127.0.0.1:" in caplog.text and "path=/broken failed" in caplog.text
    assert "RuntimeError: oops" in caplog.text
    assert (await http_exchange(port, get("/health"))).status == 200


async def test_a_percent_encoded_path_is_matched_as_sent(serve: Serve) -> None:
    app = App()
    app.get("/caf%C3%A9")(page)
    port = await serve(app)
    assert (await http_exchange(port, get("/caf%C3%A9"))).body == b"page"


async def test_an_ipv6_client_is_logged_in_brackets(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # The address from a trusted proxy's header: "2001:db8::5:0" would read as
    # the address 2001:db8::5:0 without a port.
    port = await serve(make_app())
    caplog.set_level(logging.INFO, logger="wsroute")
    answer = await http_exchange(port, get("/broken", "X-Forwarded-For: 2001:db8::5"))
    assert answer.status == 500
    lines = [r.getMessage() for r in caplog.records]
    assert "GET from [2001:db8::5]:0 path=/broken failed" in lines
    assert "GET from [2001:db8::5]:0 path=/broken 500" in lines


async def test_the_javascript_client_is_served(serve: Serve) -> None:
    port = await serve(App())
    answer = await http_exchange(port, get("/wsroute.js"))
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"export function connect" in answer.body
    etag = answer.headers["etag"]
    again = await http_exchange(port, get("/wsroute.js", f"If-None-Match: {etag}"))
    assert (again.status, again.body) == (304, b"")
    assert (await http_exchange(port, get("/wsroute.js", method="HEAD"))).body == b""


async def test_the_client_path_can_be_moved_or_switched_off(serve: Serve) -> None:
    port = await serve(App(client_path="/static/ws.js"))
    assert (await http_exchange(port, get("/static/ws.js"))).status == 200
    assert (await http_exchange(port, get("/wsroute.js"))).status == 426
    port = await serve(App(client_path=None))
    assert (await http_exchange(port, get("/wsroute.js"))).status == 426
