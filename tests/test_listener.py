"""The TCP listeners and their accept loop (wsroute/_server/listener.py), and TLS.

A real listener for the common case. The errors ``accept`` can raise cannot be had
on demand from a real socket, so a scripted socket stands in for those. TLS is
served through ``App.serve(ssl_context=...)`` to real TLS clients: the `websockets`
library and wsroute's own client, with certificates from tests/tlstools.py.
"""

from __future__ import annotations

import errno
import functools
import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio

import wsroute.client
from wsroute import App
from wsroute._server.listener import Serve, accept_loop, bind_sockets, listen

from . import wsclient
from .tlstools import Certs, certs

__all__ = ["certs"]  # fixture, imported to be found


async def test_each_connection_is_served_with_its_peer_address() -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    served: list[tuple[trio.SocketStream, tuple[str, int]]] = []
    arrived = trio.Event()

    async def serve(stream: trio.SocketStream, peer: tuple[str, int]) -> None:
        served.append((stream, peer))
        arrived.set()
        await stream.send_all(b"hi")
        stream.socket.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_loop, listener, nursery, serve)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        address = client.socket.getsockname()[:2]
        with trio.fail_after(5):
            await arrived.wait()
            assert await client.receive_some(10) == b"hi"
        nursery.cancel_scope.cancel()
    await client.aclose()
    await listener.aclose()
    [(stream, peer)] = served
    assert isinstance(stream, trio.SocketStream)
    assert peer == address


class ScriptedSocket:
    """``accept`` raises the scripted errors, then returns a real socket once."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.pair = trio.socket.socketpair()

    async def accept(self) -> tuple[Any, tuple[str, int]]:
        await trio.lowlevel.checkpoint()
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, "scripted")
        if self.pair is None:
            await trio.sleep_forever()
        connection, self.pair = self.pair[0], None
        return connection, ("10.0.0.1", 4321)


async def run_script(sock: ScriptedSocket) -> list[tuple[str, int]]:
    served: list[tuple[str, int]] = []

    async def serve(stream: trio.SocketStream, peer: tuple[str, int]) -> None:
        served.append(peer)
        stream.socket.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_loop, SimpleNamespace(socket=sock), nursery, serve)
        with trio.fail_after(5):
            while not served:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    return served


async def test_a_connection_gone_before_accept_is_skipped(autojump_clock: Any) -> None:
    sock = ScriptedSocket(errno.ECONNABORTED, errno.ECONNRESET, errno.EPERM)
    assert await run_script(sock) == [("10.0.0.1", 4321)]


async def test_out_of_file_descriptors_is_logged_and_retried(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sock = ScriptedSocket(errno.EMFILE, errno.ENOBUFS)
    start = trio.current_time()
    assert await run_script(sock) == [("10.0.0.1", 4321)]
    assert trio.current_time() - start >= 0.2  # 100 ms after each
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "EMFILE" in errors[0] and "retrying" in errors[0]


@pytest.mark.parametrize(
    ("code", "raised"), [(errno.EBADF, trio.ClosedResourceError), (errno.EINVAL, OSError)]
)
async def test_other_errors_end_the_loop(code: int, raised: type[Exception]) -> None:
    async def serve(stream: trio.SocketStream, peer: tuple[str, int]) -> None:
        raise AssertionError("nothing to serve")

    async with trio.open_nursery() as nursery:
        with pytest.raises(raised):
            await accept_loop(SimpleNamespace(socket=ScriptedSocket(code)), nursery, serve)  # type: ignore[arg-type]


# -- bound sockets ---------------------------------------------------------------------


def test_a_reserved_port_is_shared_with_reuse_port_only() -> None:
    """The supervisor's reservation: bound without SO_REUSEADDR, never listening."""
    [first] = bind_sockets("127.0.0.1", 0, reuse_port=True, reuse_addr=False)
    port = first.getsockname()[1]
    try:
        [second] = bind_sockets("127.0.0.1", port, reuse_port=True)
        second.close()
        with pytest.raises(OSError) as refused:
            bind_sockets("127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        first.close()


async def test_connections_to_a_shared_port_reach_every_listener() -> None:
    """Two listeners with SO_REUSEPORT on one port, as two workers have: the kernel
    spreads connections between them (by a hash of the client's address)."""
    sockets = [bind_sockets("127.0.0.1", 0, reuse_port=True)[0]]
    port = sockets[0].getsockname()[1]
    sockets += bind_sockets("127.0.0.1", port, reuse_port=True)
    listeners = [listen(sock) for sock in sockets]
    served: list[int] = []

    def serve_as(index: int) -> Serve:
        async def serve(stream: trio.abc.Stream, peer: tuple[str, int]) -> None:
            served.append(index)
            await stream.aclose()

        return serve

    async with trio.open_nursery() as nursery:
        for index, listener in enumerate(listeners):
            nursery.start_soon(accept_loop, listener, nursery, serve_as(index))
        with trio.fail_after(5):
            for _ in range(40):  # each lands on one listener: all 40 on one is 2^-39
                client = await trio.open_tcp_stream("127.0.0.1", port)
                await client.aclose()
            while len(served) < 40:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    for listener in listeners:
        await listener.aclose()
    assert set(served) == {0, 1}


# -- TLS -------------------------------------------------------------------------------

TLS_APP_TIMEOUT = 5.0


def tls_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    return app


async def serve_tls(nursery: trio.Nursery, app: App, certs: Certs) -> int:
    serve = functools.partial(app.serve, ssl_context=certs.server_context())
    port: int = await nursery.start(serve, "127.0.0.1", 0)
    return port


async def test_tls_serves_wss_to_websockets_and_to_the_python_client(
    nursery: trio.Nursery, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    app = tls_app()
    with caplog.at_level(logging.INFO, logger="wsroute"):
        port = await serve_tls(nursery, app, certs)
    assert f"listening on wss://127.0.0.1:{port} (broker memory://)" in caplog.messages
    async with wsclient.connect(port, ssl=certs.client_context()) as independent:
        assert (await independent.request("ping"))["data"] == "pong"
    url = f"wss://127.0.0.1:{port}/"
    async with wsroute.client.connect(url, ssl_context=certs.client_context()) as client:
        assert await client.request("ping") == "pong"
    app.shutdown()


async def test_a_plain_http_client_on_the_tls_port_costs_only_its_connection(
    nursery: trio.Nursery, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    port = await serve_tls(nursery, tls_app(), certs)
    async with wsclient.connect(port, ssl=certs.client_context()) as client:
        plain = await trio.open_tcp_stream("127.0.0.1", port)
        with caplog.at_level(logging.INFO, logger="wsroute"):
            await plain.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(TLS_APP_TIMEOUT):
                while await plain.receive_some(1024):
                    pass  # TLS's alert, then the end
        await plain.aclose()
        assert (await client.request("ping"))["data"] == "pong"
    [failed] = [m for m in caplog.messages if m.startswith("TLS handshake with 127.0.0.1:")]
    assert "failed: [SSL: HTTP_REQUEST] http request" in failed


async def test_a_silent_client_on_the_tls_port_is_dropped_after_the_handshake_timeout(
    nursery: trio.Nursery, certs: Certs, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = await serve_tls(nursery, tls_app(handshake_timeout=3.0), certs)
    silent = await trio.open_tcp_stream("127.0.0.1", port)
    started = trio.current_time()
    with caplog.at_level(logging.INFO, logger="wsroute"), trio.fail_after(10):
        assert await silent.receive_some(1024) == b""  # closed, without a word
    assert 3.0 <= trio.current_time() - started < 4.0
    assert "handshake timed out after 3.0 s" in caplog.messages
    await silent.aclose()
