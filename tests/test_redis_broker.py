"""The Redis broker (``wsroute.brokers.redis``) against real redis-server processes.

Its configuration (URL, options, TLS, working without coredis), conformance, prefixes
and credentials as Redis sees them, and two apps on one Redis restarted under load.
The link, the session and its supervisor have their own modules:
tests/test_redis_link.py, tests/test_redis_session.py and tests/test_redis_supervisor.py.
Real time throughout (real sockets), every wait bounded.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from wsroute import App, BrokerError
from wsroute.brokers import BrokerMessage, BrokerState, RedisBroker, from_url
from wsroute.testing import (
    Event,
    RequestError,
    TestClient,
    broker_checks,
    open_app,
    open_client,
)

from .needs import missing
from .redisproc import RedisServer, free_port, own_redis_server, redis_server, running_server
from .redistools import TIMEOUT, next_message, quick, wait_until

__all__ = ["own_redis_server", "redis_server"]  # fixtures, imported to be found

# -- configuration ----------------------------------------------------------------------


def test_from_url_selects_redis() -> None:
    broker = from_url("redis://:s%40cret@cache.internal:6380/2?prefix=shop:&give_up_after=30")
    assert isinstance(broker, RedisBroker)
    assert (broker.host, broker.port, broker.db) == ("cache.internal", 6380, 2)
    assert broker.prefix == "shop:"
    assert broker.give_up_after == 30.0
    assert broker._password == "s@cret"
    assert broker.describe() == "redis://cache.internal:6380/2"  # no credentials
    assert isinstance(from_url("redis://localhost"), RedisBroker)


def test_defaults_and_tls() -> None:
    broker = RedisBroker()
    assert broker.describe() == "redis://localhost:6379/0"
    assert (broker.prefix, broker.backlog, broker.start_timeout) == ("wsroute:", 4096, 0.0)
    assert broker._ssl_context is None
    secure = RedisBroker("rediss://user:pw@[::1]/1")
    assert secure._ssl_context is not None
    assert secure.describe() == "rediss://[::1]:6379/1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost/x", "database number"),
        ("redis://localhost:notaport", "invalid port"),
        ("redis://localhost?bogus=1", "unknown Redis broker option 'bogus'"),
        ("redis://localhost?give_up_after=soon", "invalid value 'soon'"),
        ("redis://localhost?give_up_after=0", "give_up_after must be positive"),
        ("redis://localhost?backlog=0", "backlog must be at least 1"),
        ("redis://localhost?start_timeout=-1", "start_timeout must be 0 or more"),
        ("redis://localhost?give_up_after=1&give_up_after=2", "'give_up_after' is given twice"),
    ],
)
def test_invalid_urls_and_options(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_url(url)


def test_constructor_rejects_query_and_other_schemes() -> None:
    with pytest.raises(ValueError, match="from_url"):
        RedisBroker("redis://localhost?prefix=x")
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        RedisBroker("http://localhost")


def test_importing_wsroute_does_not_import_coredis() -> None:
    script = "import sys, wsroute, wsroute.brokers; print('coredis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr


def test_without_coredis_wsroute_imports_and_redis_says_how_to_install() -> None:
    script = textwrap.dedent("""
        import sys
        sys.modules["coredis"] = None  # as if not installed
        import wsroute, wsroute.brokers
        from wsroute.brokers import RedisBroker, from_url
        assert "coredis" not in [name.split(".")[0] for name in sys.modules if sys.modules[name]]
        try:
            RedisBroker()
        except ImportError as exc:
            print("ImportError:", exc)
        try:
            from_url("redis://localhost")
        except ValueError as exc:
            print("ValueError:", exc)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ImportError: the Redis broker needs coredis: pip install 'wsroute[redis]'",
        "ValueError: broker redis://: the Redis broker needs coredis: pip install 'wsroute[redis]'",
    ]


# -- conformance ----------------------------------------------------------------------


@pytest.mark.parametrize("check", list(broker_checks()))
async def test_conformance(check: str, redis_server: RedisServer) -> None:
    await broker_checks()[check](lambda: RedisBroker(redis_server.url))


# -- what Redis sees --------------------------------------------------------------------


async def test_prefixes_keep_apps_apart(redis_server: RedisServer) -> None:
    one = RedisBroker(redis_server.url, prefix="one:")
    two = RedisBroker(redis_server.url, prefix="two:")
    async with one.connect() as first, two.connect() as second:
        await first.subscribe("news")
        await second.subscribe("news")
        await second.subscribe("sentinel")
        await first.publish("news", b"for one")
        assert await next_message(first) == BrokerMessage("news", b"for one")
        await second.publish("sentinel", b"s")
        assert await next_message(second) == BrokerMessage("sentinel", b"s")


async def test_password_and_database_from_the_url() -> None:
    with running_server(["--requirepass", "s3cr:t"]) as server:
        url = f"redis://:s3cr%3At@127.0.0.1:{server.port}/5"
        broker = from_url(url)
        assert "s3cr" not in broker.describe()
        async with broker.connect() as session:
            await session.subscribe("t")
            await session.publish("t", b"authenticated")
            assert await next_message(session) == BrokerMessage("t", b"authenticated")
            async with server.client(password="s3cr:t") as client:
                inspector = await client.client_id()  # this client: not the broker's
                ours = [c for c in await client.client_list() if int(c["id"]) != inspector]
                assert ours and {int(c["db"]) for c in ours} == {5}
        with trio.fail_after(TIMEOUT), pytest.raises(BrokerError, match="cannot connect"):
            async with RedisBroker(f"redis://:wrong@127.0.0.1:{server.port}").connect():
                pass


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    """A server with a TLS port and the certificate it presents. A sync fixture, so
    that a missing capability skips with its reason (an async test's skip reaches
    pytest wrapped in an exception group, and loses it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x"]
    request += ["-keyout", str(key), "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [openssl, *request],
        check=True,
        capture_output=True,
        timeout=30,
    )
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    with running_server(tls, needs="TLS") as server:
        yield server, tls_port, cert


async def test_rediss_connects_with_tls(tls_redis: tuple[RedisServer, int, Path]) -> None:
    _, tls_port, cert = tls_redis
    url = f"rediss://127.0.0.1:{tls_port}/0"
    trusting = ssl.create_default_context(cafile=str(cert))
    async with RedisBroker(url, ssl_context=trusting).connect() as session:
        await session.subscribe("t")
        await session.publish("t", b"over TLS")
        assert await next_message(session) == BrokerMessage("t", b"over TLS")
    # The default context checks the certificate against the system's CAs.
    with trio.fail_after(TIMEOUT), pytest.raises(BrokerError, match="cannot connect"):
        async with from_url(url).connect():
            pass


# -- in an app: hooks, client events, broker_unavailable -----------------------------------


def say_app(url: str, states: list[BrokerState]) -> App:
    app = App(broker=quick(url, give_up_after=30), broker_state_events=True)

    @app.broadcast("say")
    async def say(n: int) -> int:
        return n

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    @app.on_broker_state
    async def record(state: BrokerState) -> None:
        states.append(state)

    return app


@asynccontextmanager
async def two_processes(
    url: str,
) -> AsyncIterator[tuple[TestClient, TestClient, TestClient, list[BrokerState]]]:
    """Two apps on one Redis, as two processes would be: two clients on the first
    (a broadcaster and one for direct requests), one on the second."""
    states: list[BrokerState] = []
    app_a, app_b = say_app(url, states), say_app(url, [])
    async with (
        open_app(app_a),
        open_app(app_b),
        open_client(app_a) as sender,
        open_client(app_a) as direct,
        open_client(app_b) as listener,
    ):
        yield sender, direct, listener, states


async def test_redis_restarted_while_a_client_broadcasts(own_redis_server: RedisServer) -> None:
    server = own_redis_server
    results: dict[int, str] = {}  # broadcast n -> "ok" or its error code
    received: list[int] = []  # the says the client on the other app got, in order
    signalled: list[str] = []  # the broker_state events it got

    async def broadcast_forever(sender: TestClient) -> None:
        for n in range(1, 100_000):
            try:
                await sender.request("say", n)
                results[n] = "ok"
            except RequestError as exc:
                results[n] = exc.code
            await trio.sleep(0.01)

    async def listen(listener: TestClient) -> None:
        while True:
            frame = await listener.receive(timeout=60)
            assert isinstance(frame, Event), frame
            if frame.type == "say":
                received.append(frame.data)
            else:
                assert frame.type == "broker_state", frame
                signalled.append(frame.data["state"])

    async with (
        two_processes(server.url) as (sender, direct, listener, states),
        trio.open_nursery() as background,
    ):
        background.start_soon(listen, listener)
        async with trio.open_nursery() as broadcasting:
            broadcasting.start_soon(broadcast_forever, sender)
            await wait_until(lambda: _true(len(received) >= 10), "broadcasts flow")

            server.kill()
            await wait_until(
                lambda: _true(signalled == ["disconnected"]), "the outage is signalled"
            )
            await wait_until(
                lambda: _true("broker_unavailable" in results.values()),
                "broadcasts are refused while Redis is down",
            )
            assert await direct.request("ping") == "pong"  # direct requests still work

            await server.astart()
            back = trio.current_time()
            await wait_until(
                lambda: _true(signalled == ["disconnected", "connected"]), "recovery is signalled"
            )
            resumed = max(results) + 1
            await wait_until(lambda: _true(any(n >= resumed for n in received)), "delivery resumes")
            assert trio.current_time() - back < TIMEOUT
            broadcasting.cancel_scope.cancel()
        last = max(n for n, result in results.items() if result == "ok")
        await wait_until(lambda: _true(last in received), "the last broadcast arrives")
        background.cancel_scope.cancel()

    assert received == sorted(set(received)), "delivered out of order or twice"
    acked_after = {n for n, result in results.items() if n >= resumed and result == "ok"}
    assert acked_after <= set(received), "a broadcast acknowledged after recovery was lost"
    assert set(results.values()) == {"ok", "broker_unavailable"}
    assert states == [BrokerState.DISCONNECTED, BrokerState.CONNECTED]


async def _true(value: bool) -> bool:
    return value
