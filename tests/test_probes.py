"""Health, readiness and metrics (``wsroute._server.probes``) over real sockets: the
answers, paths moved or turned off, clashes with the app's own routes, and readiness
following shutdown and a real redis-server that stops and comes back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from wsroute import App, RegistrationError

from .rawws import http_exchange
from .redisproc import RedisServer, own_redis_server
from .redistools import TIMEOUT, quick
from .wsclient import connect

__all__ = ["own_redis_server"]  # a fixture, imported to be found

Serve = Callable[[App], Awaitable[int]]


def get(target: str, method: str = "GET") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


async def test_health_readiness_and_metrics_are_on_by_default(serve: Serve) -> None:
    port = await serve(App())
    health = await http_exchange(port, get("/healthz"))
    assert (health.status, health.body) == (200, b"ok\n")
    assert health.headers["cache-control"] == "no-store"
    ready = await http_exchange(port, get("/readyz"))
    assert (ready.status, ready.body) == (200, b"ready\n")
    metrics = await http_exchange(port, get("/metrics"))
    assert metrics.status == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {f.name for f in text_string_to_metric_families(metrics.body.decode())}
    assert {"wsroute_connections_open", "wsroute_messages_in", "wsroute_handler_seconds"} <= names


async def test_head_gets_the_headers_only(serve: Serve) -> None:
    port = await serve(App())
    for path in ("/healthz", "/readyz", "/metrics"):
        answer = await http_exchange(port, get(path, "HEAD"))
        assert answer.status == 200 and answer.body == b"", path
        assert int(answer.headers["content-length"]) > 0


async def test_paths_can_be_moved_or_turned_off(serve: Serve) -> None:
    port = await serve(App(health_path="/ops/alive", ready_path=None, metrics_path=None))
    assert (await http_exchange(port, get("/ops/alive"))).status == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        answer = await http_exchange(port, get(path))
        # What any path nothing answers gets.
        assert answer.status == 426 and answer.headers["upgrade"] == "websocket", path


@pytest.mark.parametrize("option", ["health_path", "ready_path", "metrics_path"])
def test_a_probe_path_is_checked(option: str) -> None:
    with pytest.raises(ValueError, match=f"App option {option} must be a path"):
        App(**{option: "healthz"})


def test_a_get_route_on_a_probe_path_names_the_option() -> None:
    app = App()

    async def mine() -> str:
        return "mine"

    with pytest.raises(RegistrationError, match=r"'/metrics' is the path of the metrics") as info:
        app.add_get("/metrics", mine)
    assert "App(metrics_path='/another-path'), or metrics_path=None" in str(info.value)
    with pytest.raises(RegistrationError, match=r"App option health_path"):
        app.add_get("/healthz", mine)
    App(health_path=None).add_get("/healthz", mine)  # turned off: the path is free


def test_a_static_mount_on_a_probe_path_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match=r"App option ready_path"):
        App().add_static("/readyz/", tmp_path)
    App().add_static("/", tmp_path)  # below every path, but the probes answer first


async def test_a_probe_moved_onto_the_apps_route_fails_the_start() -> None:
    app = App()

    @app.get("/status")
    async def status() -> str:
        return "mine"

    # As the command line's --health-path does.
    app.config = attrs.evolve(app.config, health_path="/status")
    with pytest.raises(RegistrationError, match=r"'/status' is the path of the health check"):
        await app.serve("127.0.0.1", 0)


async def test_a_probe_after_the_shutdown_began_cannot_connect(serve: Serve) -> None:
    # As deployment.md says: a handler in flight holds the drain open, and a new
    # probe meanwhile is refused at connect, not answered 503.
    app = App()
    release, running = trio.Event(), trio.Event()

    @app.direct("slow")
    async def slow() -> str:
        running.set()
        await release.wait()
        return "done"

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "slow", "id": 1})
        with trio.fail_after(TIMEOUT):
            await running.wait()
        app.shutdown()
        with trio.fail_after(TIMEOUT):
            while True:  # until the listener is closed (a few checkpoints)
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    break
                await stream.aclose()
                await trio.sleep(0.01)
        release.set()
        assert (await client.recv())["data"] == "done"


async def test_not_ready_while_shutting_down(serve: Serve) -> None:
    app = App()
    port = await serve(app)
    # A client connected before the shutdown asks after it began (the listener is
    # closed by then: no new client gets this far).
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await trio.sleep(0.05)  # accepted
        app.shutdown()
        await trio.sleep(0.05)
        await stream.send_all(get("/readyz"))
        data = b""
        with trio.fail_after(TIMEOUT):
            while chunk := await stream.receive_some(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert data.endswith(b"\r\n\r\nnot ready: shutting down\n")


async def _ready(port: int) -> tuple[int, bytes]:
    answer = await http_exchange(port, get("/readyz"))
    return answer.status, answer.body


async def _until_ready_is(port: int, status: int) -> bytes:
    with trio.fail_after(TIMEOUT * 2):
        while True:
            got, body = await _ready(port)
            if got == status:
                return body
            await trio.sleep(0.05)


async def test_readiness_follows_a_real_redis_that_stops_and_returns(
    serve: Serve, own_redis_server: RedisServer
) -> None:
    app = App(broker=quick(own_redis_server.url, give_up_after=60))
    port = await serve(app)
    assert await _ready(port) == (200, b"ready\n")
    own_redis_server.kill()
    assert await _until_ready_is(port, 503) == b"not ready: broker unavailable\n"
    assert (await http_exchange(port, get("/healthz"))).status == 200  # alive all the same
    assert app.metrics.value("wsroute_broker_connected") == 0
    await own_redis_server.astart()
    assert await _until_ready_is(port, 200) == b"ready\n"
    assert app.metrics.value("wsroute_broker_connected") == 1
    assert app.metrics.value("wsroute_broker_disconnects_total") == 1
    assert app.metrics.value("wsroute_broker_reconnects_total") == 1
