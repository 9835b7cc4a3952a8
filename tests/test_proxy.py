"""The client's address and scheme behind reverse proxies (``wsroute._proxy``): the
header parsers, the trust list, and the resolved ``conn.request.remote`` and
``conn.request.scheme`` over real sockets (TLS too), with per-IP caps counting the
address."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from websockets.exceptions import InvalidStatus

from wsroute import App, Connection, Request
from wsroute._proxy import (
    TrustedProxies,
    client_address,
    format_address,
    parse_forwarded,
    parse_x_forwarded_for,
    resolve,
)
from wsroute.testing import open_client

from .rawws import http_exchange
from .tlstools import Certs, certs
from .wsclient import connect

__all__ = ["certs"]  # fixture, imported to be found

Serve = Callable[[App], Awaitable[int]]

# -- X-Forwarded-For ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hops"),
    [
        ("203.0.113.7", [("203.0.113.7", 0)]),
        ("203.0.113.7, 10.0.0.2", [("203.0.113.7", 0), ("10.0.0.2", 0)]),
        (" 203.0.113.7 ,,10.0.0.2 ", [("203.0.113.7", 0), ("10.0.0.2", 0)]),
        ("203.0.113.7:4711", [("203.0.113.7", 4711)]),
        ("2001:DB8::17", [("2001:db8::17", 0)]),  # normalised
        ("[2001:db8::17]", [("2001:db8::17", 0)]),
        ("[2001:db8::17]:4711", [("2001:db8::17", 4711)]),
        ("::ffff:192.0.2.1", [("192.0.2.1", 0)]),  # IPv4-mapped: the IPv4 address
        ("unknown, 10.0.0.2", [None, ("10.0.0.2", 0)]),
        ("_hidden", [None]),
        ("example.com", [None]),
        ("1.2.3.4:99999", [("1.2.3.4", 0)]),  # not a port: none
        ("1.2.3.4:x", [("1.2.3.4", 0)]),
        ("[1.2.3.4]:80", [None]),  # brackets are for IPv6
        ("[2001:db8::17", [None]),
        ("[2001:db8::17]x", [None]),
        ("1.2.3.4:²", [("1.2.3.4", 0)]),  # a digit, but not an ASCII one
        ("", []),
    ],
)
def test_x_forwarded_for_hops(value: str, hops: list[Any]) -> None:
    assert parse_x_forwarded_for(value) == hops


# -- Forwarded (RFC 7239) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hops"),
    [
        ("for=192.0.2.60", [("192.0.2.60", 0)]),
        ("For=192.0.2.60;proto=https;by=203.0.113.43", [("192.0.2.60", 0)]),
        ('for="192.0.2.60:4711"', [("192.0.2.60", 4711)]),
        ('for="[2001:db8:cafe::17]:4711"', [("2001:db8:cafe::17", 4711)]),
        ('for="[2001:db8:cafe::17]"', [("2001:db8:cafe::17", 0)]),
        ('for="2001:db8:cafe::17"', [("2001:db8:cafe::17", 0)]),  # lenient: no brackets
        ("for=192.0.2.43, for=198.51.100.17", [("192.0.2.43", 0), ("198.51.100.17", 0)]),
        ("for=unknown, for=198.51.100.17", [None, ("198.51.100.17", 0)]),
        ("for=_hidden, for=_SEVKISEK", [None, None]),
        ('for="_gazonk"', [None]),
        ('for="192.0.2.60:_port"', [("192.0.2.60", 0)]),  # obfuscated port
        ("proto=https, for=10.0.0.1", [None, ("10.0.0.1", 0)]),  # a hop without for
        ('for="1.2.3.4";by="a\\"b"', [("1.2.3.4", 0)]),  # escapes in quoted strings
        ('by="a,b";for=1.2.3.4', [("1.2.3.4", 0)]),  # a comma inside quotes
        (" ; for=1.2.3.4 ;; , ,for=5.6.7.8 ", [("1.2.3.4", 0), ("5.6.7.8", 0)]),
        ("", []),
    ],
)
def test_forwarded_hops(value: str, hops: list[Any]) -> None:
    assert parse_forwarded(value) == hops


@pytest.mark.parametrize(
    "value",
    [
        "for=2001:db8::1",  # IPv6 must be quoted
        "for=1.2.3.4 junk",
        'for="1.2.3.4',  # unterminated quote
        "for",
        "=1.2.3.4",
        "for=1.2.3.4;for=5.6.7.8",  # a parameter twice in one element
        "for=1.2.3.4 for=5.6.7.8",
    ],
)
def test_forwarded_that_does_not_parse_is_none(value: str) -> None:
    assert parse_forwarded(value) is None


# -- trust --------------------------------------------------------------------------


def test_trusted_proxies_match_addresses_and_networks() -> None:
    trusted = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8 ,2001:db8::/32")
    assert trusted.items == ("127.0.0.1", "10.0.0.0/8", "2001:db8::/32")
    for host in ("127.0.0.1", "10.1.2.3", "2001:db8::9", "::ffff:10.0.0.1", "::ffff:127.0.0.1"):
        assert host in trusted, host
    for host in ("127.0.0.2", "11.0.0.1", "2001:db9::1", "unknown", "", None):
        assert host not in trusted, host


def test_star_trusts_everyone_and_empty_trusts_no_one() -> None:
    assert "203.0.113.9" in TrustedProxies.parse("*")
    assert TrustedProxies.parse(["*", "10.0.0.1"]).items == ("*",)
    nobody = TrustedProxies.parse("")
    assert nobody.items == ()
    assert "127.0.0.1" not in nobody


def test_a_network_is_normalised() -> None:
    assert TrustedProxies.parse(["10.1.2.3/8", "::1"]).items == ("::1", "10.0.0.0/8")


# -- resolving the client's address ----------------------------------------------------


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in pairs]


LOCAL = TrustedProxies.parse("127.0.0.1")
PROXY = ("127.0.0.1", 50000)


def test_a_trusted_peer_gives_the_right_most_untrusted_hop() -> None:
    # The client wrote "6.6.6.6" itself; the trusted proxy appended what it saw.
    xff = headers(("X-Forwarded-For", "6.6.6.6, 203.0.113.7"))
    assert client_address(PROXY, xff, LOCAL) == ("203.0.113.7", 0)
    chain = TrustedProxies.parse("127.0.0.1,10.0.0.0/8")
    xff = headers(("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.5"))
    assert client_address(PROXY, xff, chain) == ("203.0.113.7", 0)


def test_an_untrusted_peer_is_its_own_address() -> None:
    xff = headers(("X-Forwarded-For", "203.0.113.7"))
    assert client_address(("198.51.100.1", 4000), xff, LOCAL) == ("198.51.100.1", 4000)
    assert client_address(None, xff, LOCAL) is None


def test_every_hop_trusted_gives_the_left_most() -> None:
    xff = headers(("X-Forwarded-For", "203.0.113.7, 198.51.100.1"))
    assert client_address(PROXY, xff, TrustedProxies.parse("*")) == ("203.0.113.7", 0)
    xff = headers(("X-Forwarded-For", "127.0.0.1"))
    assert client_address(PROXY, xff, LOCAL) == ("127.0.0.1", 0)


def test_repeated_headers_are_one_list_in_order() -> None:
    xff = headers(("X-Forwarded-For", "6.6.6.6"), ("Host", "h"), ("X-Forwarded-For", "203.0.113.7"))
    assert client_address(PROXY, xff, LOCAL) == ("203.0.113.7", 0)
    fwd = headers(("Forwarded", "for=6.6.6.6"), ("Forwarded", 'for="[2001:db8::7]:99"'))
    assert client_address(PROXY, fwd, LOCAL) == ("2001:db8::7", 99)


def test_x_forwarded_for_wins_over_forwarded() -> None:
    both = headers(("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "203.0.113.7"))
    assert client_address(PROXY, both, LOCAL) == ("203.0.113.7", 0)


@pytest.mark.parametrize(
    "pairs",
    [
        [("X-Forwarded-For", "203.0.113.7, unknown")],  # the proxy could not tell
        [("X-Forwarded-For", "garbage")],
        [("X-Forwarded-For", " , ")],
        [("Forwarded", "for=_hidden")],
        [("Forwarded", "for=203.0.113.7 junk")],  # does not parse: ignored
        [("Forwarded", "proto=https")],
        [],
    ],
    ids=str,
)
def test_no_readable_client_keeps_the_peer(pairs: list[tuple[str, str]]) -> None:
    assert client_address(PROXY, headers(*pairs), LOCAL) == PROXY


def test_a_hop_without_address_ends_the_walk_even_if_an_address_is_left_of_it() -> None:
    xff = headers(("X-Forwarded-For", "203.0.113.7, unknown, 10.0.0.5"))
    chain = TrustedProxies.parse("127.0.0.1,10.0.0.0/8")
    assert client_address(PROXY, xff, chain) == PROXY


# -- the scheme -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "scheme"),
    [
        ([], "ws"),
        ([("X-Forwarded-Proto", "https")], "wss"),
        ([("X-Forwarded-Proto", "wss")], "wss"),
        ([("X-Forwarded-Proto", "HTTPS ")], "wss"),
        ([("X-Forwarded-Proto", "http")], "ws"),
        ([("X-Forwarded-Proto", "ftp")], "ws"),  # unknown: the listener's own
        ([("X-Forwarded-Proto", "")], "ws"),
        ([("X-Forwarded-Proto", "http, https")], "wss"),  # the right-most item
        ([("X-Forwarded-Proto", "https, http")], "ws"),
        ([("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https")], "wss"),
        ([("Forwarded", "for=1.2.3.4;proto=https")], "wss"),
        ([("Forwarded", "proto=http, for=1.2.3.4;proto=https")], "wss"),
        ([("Forwarded", "proto=https, for=1.2.3.4")], "wss"),  # the last one given
        ([("Forwarded", 'proto="https')], "ws"),  # does not parse
        ([("Forwarded", "proto=https"), ("X-Forwarded-Proto", "http")], "ws"),  # X- wins
    ],
)
def test_a_trusted_peer_forwards_the_scheme(pairs: list[tuple[str, str]], scheme: str) -> None:
    assert resolve(("127.0.0.1", 1), headers(*pairs), LOCAL, "ws")[1] == scheme


def test_an_unknown_forwarded_scheme_keeps_the_listener_s() -> None:
    forwarded = headers(("X-Forwarded-Proto", "gopher"))
    assert resolve(("127.0.0.1", 1), forwarded, LOCAL, "wss")[1] == "wss"
    forwarded = headers(("X-Forwarded-Proto", "http"))
    assert resolve(("127.0.0.1", 1), forwarded, LOCAL, "wss")[1] == "ws"  # believed


def test_an_untrusted_peer_keeps_the_listener_s_scheme() -> None:
    forwarded = headers(("X-Forwarded-Proto", "https"), ("Forwarded", "proto=https"))
    assert resolve(("10.9.9.9", 1), forwarded, LOCAL, "ws") == (("10.9.9.9", 1), "ws")


def test_address_and_scheme_come_from_their_own_headers() -> None:
    pairs = headers(("X-Forwarded-For", "203.0.113.7"), ("Forwarded", "for=1.1.1.1;proto=https"))
    assert resolve(("127.0.0.1", 1), pairs, LOCAL, "ws") == (("203.0.113.7", 0), "wss")


def test_format_address() -> None:
    assert format_address(("1.2.3.4", 5)) == "1.2.3.4:5"
    assert format_address(("2001:db8::1", 5)) == "[2001:db8::1]:5"
    assert format_address(None) is None


# -- the App's options, through the in-memory client ----------------------------------


def remote_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("remote")
    async def remote(conn: Connection) -> Any:
        return list(conn.request.remote) if conn.request.remote else None

    @app.direct("scheme")
    async def scheme(conn: Connection) -> str:
        return conn.request.scheme

    @app.get("/scheme")
    async def plain_scheme(request: Request) -> str:
        return request.scheme

    return app


FORWARDED = {"X-Forwarded-For": "203.0.113.7"}


async def test_the_test_client_resolves_like_the_server(autojump_clock) -> None:
    app = remote_app()
    async with open_client(app, remote=("127.0.0.1", 1), headers=FORWARDED) as client:
        assert await client.request("remote") == ["203.0.113.7", 0]
    async with open_client(app, remote=("10.9.9.9", 1), headers=FORWARDED) as client:
        assert await client.request("remote") == ["10.9.9.9", 1]
    proto = {"X-Forwarded-Proto": "https"}
    async with open_client(app, remote=("127.0.0.1", 1), headers=proto) as client:
        assert await client.request("scheme") == "wss"
    async with open_client(app, remote=("10.9.9.9", 1), headers=proto) as client:
        assert await client.request("scheme") == "ws"


async def test_proxy_headers_off_keeps_the_peer(autojump_clock) -> None:
    app = remote_app(proxy_headers=False)
    async with open_client(app, remote=("127.0.0.1", 1), headers=FORWARDED) as client:
        assert await client.request("remote") == ["127.0.0.1", 1]


async def test_the_accept_hook_sees_the_resolved_address(autojump_clock) -> None:
    app = remote_app(forwarded_allow_ips=["10.0.0.0/8"])
    seen: list[Any] = []

    @app.accept
    async def accept(request: Request) -> None:
        seen.append(request.remote)

    async with open_client(app, remote=("10.1.1.1", 1), headers=FORWARDED):
        pass
    assert seen == [("203.0.113.7", 0)]


# -- real sockets: a peer on 127.0.0.2 is not 127.0.0.1 -------------------------------

UNTRUSTED = {"source_address": ("127.0.0.2", 0)}


async def test_a_spoofed_header_from_an_untrusted_peer_is_ignored(serve: Serve) -> None:
    port = await serve(remote_app())  # trusts 127.0.0.1 only
    spoofed = {"X-Forwarded-For": "203.0.113.7", "Forwarded": "for=198.51.100.1"}
    async with connect(port, additional_headers=spoofed, **UNTRUSTED) as client:
        reply = await client.request("remote")
    assert reply["data"][0] == "127.0.0.2"


async def test_a_trusted_peer_is_believed(serve: Serve) -> None:
    port = await serve(remote_app())
    forwarded = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    async with connect(port, additional_headers=forwarded) as client:
        assert (await client.request("remote"))["data"] == ["203.0.113.7", 0]
    async with connect(port, additional_headers={"Forwarded": 'for="[2001:db8::7]:4711"'}) as c:
        assert (await c.request("remote"))["data"] == ["2001:db8::7", 4711]


async def test_a_malformed_header_from_a_trusted_peer_keeps_the_peer(serve: Serve) -> None:
    port = await serve(remote_app())
    async with connect(port, additional_headers={"Forwarded": 'for="1.2.3.4'}) as client:
        assert (await client.request("remote"))["data"][0] == "127.0.0.1"
    async with connect(port, additional_headers={"X-Forwarded-For": "999.1.2.3"}) as client:
        assert (await client.request("remote"))["data"][0] == "127.0.0.1"


async def test_the_per_ip_cap_counts_the_forwarded_address(serve: Serve) -> None:
    port = await serve(remote_app(max_connections_per_ip=1))
    one = {"X-Forwarded-For": "203.0.113.7"}
    async with connect(port, additional_headers=one):
        # Another client behind the same proxy has a place of its own.
        async with connect(port, additional_headers={"X-Forwarded-For": "203.0.113.8"}) as c:
            assert (await c.request("remote"))["data"] == ["203.0.113.8", 0]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(port, additional_headers=one):
                pass
        assert refused.value.response.status_code == 429
    # Its place is given back when it leaves.
    async with connect(port, additional_headers=one) as client:
        assert (await client.request("remote"))["data"] == ["203.0.113.7", 0]


async def test_the_per_ip_cap_ignores_spoofs_from_untrusted_peers(serve: Serve) -> None:
    port = await serve(remote_app(max_connections_per_ip=1))
    async with connect(port, additional_headers={"X-Forwarded-For": "203.0.113.1"}, **UNTRUSTED):
        with pytest.raises(InvalidStatus) as refused:
            spoof = {"X-Forwarded-For": "203.0.113.2"}
            async with connect(port, additional_headers=spoof, **UNTRUSTED):
                pass
        assert refused.value.response.status_code == 429


async def test_a_spoofed_scheme_from_an_untrusted_peer_is_ignored(serve: Serve) -> None:
    port = await serve(remote_app())
    spoofed = {"X-Forwarded-Proto": "https", "Forwarded": "proto=https"}
    async with connect(port, additional_headers=spoofed, **UNTRUSTED) as client:
        assert (await client.request("scheme"))["data"] == "ws"
    async with connect(port, additional_headers=spoofed) as client:  # now from 127.0.0.1
        assert (await client.request("scheme"))["data"] == "wss"
    async with connect(port) as client:
        assert (await client.request("scheme"))["data"] == "ws"


async def test_a_tls_listener_gives_wss_unless_a_trusted_proxy_says_otherwise(
    nursery: trio.Nursery, certs: Certs
) -> None:
    serve = functools.partial(remote_app().serve, ssl_context=certs.server_context())
    port = await nursery.start(serve, "127.0.0.1", 0)
    tls = {"ssl": certs.client_context(), "server_hostname": "127.0.0.1"}
    spoofed = {"X-Forwarded-Proto": "http"}
    async with connect(port, additional_headers=spoofed, **UNTRUSTED, **tls) as client:
        assert (await client.request("scheme"))["data"] == "wss"
    async with connect(port, additional_headers={"X-Forwarded-Proto": "nonsense"}, **tls) as c:
        assert (await c.request("scheme"))["data"] == "wss"  # unknown: the listener's
    async with connect(port, additional_headers=spoofed, **tls) as client:
        assert (await client.request("scheme"))["data"] == "ws"  # a trusted proxy's word


async def test_plain_get_routes_see_the_scheme(serve: Serve) -> None:
    port = await serve(remote_app())
    forwarded = b"GET /scheme HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"
    assert (await http_exchange(port, forwarded)).body == b"wss"
    assert (await http_exchange(port, b"GET /scheme HTTP/1.1\r\nHost: x\r\n\r\n")).body == b"ws"


# -- the upgrade rate per address, over real sockets ----------------------------------


async def refused_status(port: int, **options: Any) -> tuple[int, str | None]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(port, **options):
            pass
    response = refused.value.response
    return response.status_code, response.headers.get("Retry-After")


async def test_the_connect_rate_counts_the_forwarded_address(serve: Serve) -> None:
    app = remote_app(connect_rate_limit=(2, 60.0))
    port = await serve(app)
    one = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(2):
        async with connect(port, additional_headers=one):
            pass
    status, retry_after = await refused_status(port, additional_headers=one)
    assert status == 429
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    # Another client behind the same proxy, and the proxy itself, are not limited.
    async with connect(port, additional_headers={"X-Forwarded-For": "203.0.113.8"}) as c:
        assert (await c.request("remote"))["data"] == ["203.0.113.8", 0]
    async with connect(port) as client:
        assert (await client.request("remote"))["data"][0] == "127.0.0.1"
    assert app.metrics.value("wsroute_connections_refused_total", status="429") == 1


async def test_the_connect_rate_ignores_spoofs_from_untrusted_peers(serve: Serve) -> None:
    port = await serve(remote_app(connect_rate_limit=(2, 60.0)))
    for i in range(2):
        spoof = {"X-Forwarded-For": f"203.0.113.{i}"}
        async with connect(port, additional_headers=spoof, **UNTRUSTED):
            pass
    spoof = {"X-Forwarded-For": "203.0.113.99"}
    assert (await refused_status(port, additional_headers=spoof, **UNTRUSTED))[0] == 429
