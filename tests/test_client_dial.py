"""How the Python client opens a connection (``wsroute.client._dial``): the URL's
parts, and TLS completed before the WebSocket handshake, so that a certificate the
client does not trust fails at once, by name, against a real TLS server."""

from __future__ import annotations

import functools
import logging
import ssl
from typing import Any

import pytest
import trio
import trustme

from wsroute import App
from wsroute.client import Backoff, ConnectError, State, connect
from wsroute.client._dial import Target

from .tlstools import Certs, certs

__all__ = ["certs"]  # fixture, imported to be found

#: Far longer than any test may take: a failure that waited for it would show.
PATIENT = 600.0
#: A generous bound on what "at once" means here: not a benchmark.
AT_ONCE = 10.0
FAST = Backoff(initial=0.01, maximum=0.05)


@pytest.mark.parametrize(
    ("url", "host", "port", "resource", "tls", "host_header"),
    [
        ("ws://example.com", "example.com", 80, "/", False, "example.com"),
        ("wss://example.com/ws?a=1&b=2", "example.com", 443, "/ws?a=1&b=2", True, "example.com"),
        ("ws://127.0.0.1:8000/x", "127.0.0.1", 8000, "/x", False, "127.0.0.1:8000"),
        ("wss://[::1]:8443/", "::1", 8443, "/", True, "[::1]:8443"),
        ("wss://Example.COM:443?q", "example.com", 443, "/?q", True, "example.com"),
    ],
)
def test_a_url_s_parts(
    url: str, host: str, port: int, resource: str, tls: bool, host_header: str
) -> None:
    target = Target(url)
    assert (target.host, target.port, target.resource, target.tls) == (host, port, resource, tls)
    assert target.host_header == host_header


@pytest.mark.parametrize("url", ["http://example.com/", "example.com", "ws:///path"])
def test_a_url_that_is_not_a_websocket_url(url: str) -> None:
    with pytest.raises(ValueError, match="WebSocket URL"):
        Target(url)


@pytest.mark.parametrize("scheme", ["http://", "", "wss:"])
async def test_connect_refuses_a_url_that_is_not_a_websocket_url_at_once(
    nursery: trio.Nursery, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    # It used to be retried forever, with a warning and a traceback per attempt.
    app = echo_app()
    port: int = await nursery.start(app.serve, "127.0.0.1", 0)
    with trio.fail_after(AT_ONCE), pytest.raises(ValueError, match="WebSocket URL"):
        async with connect(f"{scheme}127.0.0.1:{port}/"):
            pass
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert app.connections == []


def echo_app() -> App:
    app = App()

    @app.direct("echo")
    async def echo(text: str) -> str:
        return text

    return app


async def serve_tls(nursery: trio.Nursery, context: ssl.SSLContext) -> int:
    port: int = await nursery.start(
        functools.partial(echo_app().serve, ssl_context=context), "127.0.0.1", 0
    )
    return port


async def test_a_trusted_certificate_connects(nursery: trio.Nursery, certs: Certs) -> None:
    port = await serve_tls(nursery, certs.server_context())
    url = f"wss://127.0.0.1:{port}/"
    async with connect(url, ssl_context=certs.client_context()) as client:
        assert await client.request("echo", "hi") == "hi"


async def test_an_untrusted_certificate_fails_at_once_and_is_not_retried(
    nursery: trio.Nursery, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    port = await serve_tls(nursery, certs.server_context())
    url = f"wss://127.0.0.1:{port}/"
    # The system's trust store knows nothing of the tests' private CA.
    logs = caplog.at_level(logging.INFO, logger="wsroute")
    with logs, trio.fail_after(AT_ONCE), pytest.raises(ConnectError) as info:
        async with connect(url, connect_timeout=PATIENT, reconnect=FAST):
            pass
    message = str(info.value)
    assert message.startswith(f"could not connect to {url}: the TLS certificate of 127.0.0.1:")
    assert "failed verification: unable to get local issuer certificate" in message
    assert "connect(ssl_context=...)" in message
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert info.value.status is None
    # One attempt: the server saw one failed TLS handshake, not a retry loop.
    assert len([m for m in caplog.messages if m.startswith("TLS handshake with")]) == 1


async def test_a_certificate_for_another_host_fails_at_once(
    nursery: trio.Nursery, certs: Certs
) -> None:
    other = certs.ca.issue_cert("other.example")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.configure_cert(context)
    port = await serve_tls(nursery, context)
    url = f"wss://127.0.0.1:{port}/"
    with trio.fail_after(AT_ONCE), pytest.raises(ConnectError) as info:
        async with connect(url, ssl_context=certs.client_context(), connect_timeout=PATIENT):
            pass
    assert "failed verification: IP address mismatch" in str(info.value)


async def test_a_reconnect_that_meets_an_untrusted_certificate_ends_the_client(
    nursery: trio.Nursery, certs: Certs
) -> None:
    """Final, as a 401 is: the client is closed for good, and says why."""
    first = echo_app()
    port: int = await nursery.start(
        functools.partial(first.serve, ssl_context=certs.server_context()), "127.0.0.1", 0
    )
    url = f"wss://127.0.0.1:{port}/"
    async with connect(url, ssl_context=certs.client_context(), reconnect=FAST) as client:
        changes = client.state_changes()
        first.shutdown()  # the client reconnects: 1001
        # Back on the same port, with a certificate from a CA the client does not know.
        stranger = trustme.CA().issue_cert("127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        stranger.configure_cert(context)
        second = functools.partial(echo_app().serve, ssl_context=context)
        with trio.fail_after(AT_ONCE):
            while True:
                try:
                    await nursery.start(second, "127.0.0.1", port)
                    break
                except OSError:  # the port is still being let go
                    await trio.sleep(0.05)
            async for change in changes:
                if change.state is State.CLOSED:
                    break
        assert "TLS certificate of 127.0.0.1" in change.reason
        assert "failed verification" in change.reason
    assert client.state is State.CLOSED


async def test_a_failed_tls_handshake_of_another_kind_is_retried(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = await serve(echo_app())  # no TLS on this port
    url = f"wss://127.0.0.1:{port}/"
    logs = caplog.at_level(logging.INFO, logger="wsroute")
    three = Backoff(initial=0.01, max_attempts=3)
    with logs, trio.fail_after(AT_ONCE), pytest.raises(ConnectError) as info:
        async with connect(url, connect_timeout=PATIENT, reconnect=three):
            pass
    assert f"the TLS handshake with 127.0.0.1:{port} failed" in str(info.value)
    refusals = [m for m in caplog.messages if "not a valid WebSocket upgrade" in m]
    assert len(refusals) == 3
