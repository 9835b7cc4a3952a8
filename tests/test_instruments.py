"""What wsroute counts of itself (``wsroute._server.instruments``): traffic sent over
real sockets, then ``/metrics`` scraped over HTTP and read with prometheus-client's
parser, each figure matching what the test did."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from wsroute import App, Connection, HandlerError
from wsroute._server.instruments import BUILTIN_ERROR_CODES, MAX_APP_ERROR_CODES

from .rawws import http_exchange, open_raw
from .wsclient import connect

Serve = Callable[[App], Awaitable[int]]
DOCS_PROTOCOL = Path(__file__).parent.parent / "docs" / "protocol.md"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    answer = await http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0)


def make_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("echo")
    async def echo(data: Any) -> Any:
        return data

    @app.direct("fail")
    async def fail() -> None:
        raise HandlerError("teapot", "no coffee here")

    @app.broadcast("say")
    async def say(text: str) -> str:
        return text

    @app.direct("push")
    async def push(count: int, conn: Connection) -> None:
        for i in range(count):
            await conn.send("tick", i)

    return app


async def closed_count(app: App, count: int) -> None:
    with trio.fail_after(5):
        while app.metrics.value("wsroute_connections_open") != count:
            await trio.sleep(0.01)


async def test_counters_match_the_traffic(serve: Serve) -> None:
    app = make_app()
    port = await serve(app)
    async with connect(port) as client:
        for i in range(5):
            assert (await client.request("echo", i, id=i))["data"] == i
        assert (await client.request("fail"))["error"]["code"] == "teapot"
        assert (await client.request("nope"))["error"]["code"] == "unknown_type"
        assert (await client.request("nope2"))["error"]["code"] == "unknown_type"
        await client.send("{not json")
        assert (await client.recv())["error"]["code"] == "invalid_json"
        assert (await client.request("say", "hi", id=7))["ok"]  # its event comes first
        assert (await client.request("push", 3, id=8))["ok"]
        during = await scrape(port)
        await client.close(1000)
    await closed_count(app, 0)
    after = await scrape(port)

    assert value(during, "wsroute_connections_open") == 1
    assert value(during, "wsroute_connections_opened_total") == 1
    assert value(after, "wsroute_connections_open") == 0
    assert value(after, "wsroute_connections_closed_total", code="1000", initiator="client") == 1

    assert value(during, "wsroute_messages_in_total", type="echo") == 5
    assert value(during, "wsroute_handler_seconds_count", type="echo") == 5
    assert value(during, "wsroute_handler_seconds_bucket", type="echo", le="+Inf") == 5
    assert value(during, "wsroute_messages_in_total", type="fail") == 1
    assert value(during, "wsroute_messages_in_total", type="say") == 1
    # Unregistered types share one label: a client cannot add samples.
    assert value(during, "wsroute_messages_in_total", type="wsroute.unknown") == 2
    assert not any(labels and ("type", "nope") in labels for _, labels in during)
    assert value(during, "wsroute_messages_in_total", type="wsroute.invalid") == 1

    assert value(during, "wsroute_errors_total", code="teapot") == 1
    assert value(during, "wsroute_errors_total", code="unknown_type") == 2
    assert value(during, "wsroute_errors_total", code="invalid_json") == 1
    assert value(during, "wsroute_messages_out_total", kind="error") == 4
    assert value(during, "wsroute_messages_out_total", kind="reply") == 7  # 5 echo, say, push
    assert value(during, "wsroute_messages_out_total", kind="event") == 4  # say's, 3 ticks
    assert value(during, "wsroute_broker_publish_seconds_count") == 1
    assert value(during, "wsroute_broker_connected") == 1
    # The same figures in-process.
    assert app.metrics.value("wsroute_messages_in_total", type="echo") == 5
    assert app.metrics.value("wsroute_handler_seconds_count", type="echo") == 5


async def test_close_codes_and_who_closed(serve: Serve) -> None:
    app = make_app()
    port = await serve(app)
    for code in (4321, 4999, 3001, 1001):
        async with connect(port) as client:
            await client.close(code)
    async with connect(port) as client:
        assert (await client.request("echo", 1))["ok"]  # and closes with 1000
    await closed_count(app, 0)
    samples = await scrape(port)
    closed = "wsroute_connections_closed_total"
    # Codes a client picks from the application range count by thousand.
    assert value(samples, closed, code="4xxx", initiator="client") == 2
    assert value(samples, closed, code="3xxx", initiator="client") == 1
    assert value(samples, closed, code="1001", initiator="client") == 1
    assert value(samples, closed, code="1000", initiator="client") == 1
    assert value(samples, "wsroute_connections_opened_total") == 5


async def test_server_close_codes_are_kept_exact(serve: Serve) -> None:
    app = App()

    @app.direct("bye")
    async def bye(conn: Connection) -> None:
        await conn.close(4404, "gone")

    port = await serve(app)
    async with connect(port) as client:
        await client.send({"type": "bye", "id": 1})
        assert (await client.wait_closed())[0] == 4404
    await closed_count(app, 0)
    samples = await scrape(port)
    assert value(samples, "wsroute_connections_closed_total", code="4404", initiator="server") == 1


async def test_slow_consumer_drops_and_closes(serve: Serve) -> None:
    app = make_app(outbox_size=4)
    port = await serve(app)
    big = "x" * 60_000
    async with open_raw(port, rcvbuf=4096) as raw:
        # The client reads nothing: the socket fills, then the outbox, then 1008.
        await raw.send_json({"type": "echo", "id": 1, "data": big})
        for i in range(40):
            await raw.send_json({"type": "echo", "id": i + 2, "data": big})
        with trio.fail_after(5):
            while not app.metrics.value("wsroute_slow_consumer_closes_total"):
                await trio.sleep(0.01)
    samples = await scrape(port)
    assert value(samples, "wsroute_slow_consumer_closes_total") == 1
    assert value(samples, "wsroute_outbox_dropped_total") >= 1


async def test_ping_timeouts_are_counted(serve: Serve) -> None:
    app = make_app(ping_interval=0.05, ping_timeout=0.05)
    port = await serve(app)
    async with open_raw(port):  # never reads, so never answers a ping
        with trio.fail_after(5):
            while not app.metrics.value("wsroute_ping_timeouts_total"):
                await trio.sleep(0.01)
    await closed_count(app, 0)
    samples = await scrape(port)
    assert value(samples, "wsroute_ping_timeouts_total") == 1
    assert value(samples, "wsroute_connections_closed_total", code="1011", initiator="server") == 1


async def test_coalesced_runs(serve: Serve) -> None:
    app = App(max_concurrency=4)
    release = trio.Event()

    @app.direct("slow", coalesce=True)
    async def slow() -> str:
        await release.wait()
        return "done"

    port = await serve(app)
    async with connect(port) as client:
        for i in range(3):
            await client.send({"type": "slow", "id": i})
        with trio.fail_after(5):
            while app.coalesce_stats.coalesced < 2:
                await trio.sleep(0.01)
        release.set()
        for _ in range(3):
            assert (await client.recv())["data"] == "done"
    samples = await scrape(port)
    assert value(samples, "wsroute_coalesce_runs_total") == 1
    assert value(samples, "wsroute_coalesced_requests_total") == 2


async def test_refused_requests_count_as_received_but_not_timed(serve: Serve) -> None:
    app = make_app(rate_limit=(2, 60.0))
    port = await serve(app)
    async with connect(port) as client:
        for i in range(2):
            assert (await client.request("echo", i, id=i))["ok"]
        assert (await client.request("echo", 9, id=9))["error"]["code"] == "rate_limited"
        samples = await scrape(port)
    assert value(samples, "wsroute_messages_in_total", type="echo") == 3
    assert value(samples, "wsroute_handler_seconds_count", type="echo") == 2
    assert value(samples, "wsroute_errors_total", code="rate_limited") == 1


async def test_frames_for_a_frame_handler(serve: Serve) -> None:
    app = App()

    @app.frame_handler
    async def shout(frame: str | bytes, conn: Connection) -> str:
        return str(frame).upper()

    port = await serve(app)
    async with connect(port) as client:
        for word in ("a", "b"):
            await client.send(word)
            assert await client.recv_raw() == word.upper()
        samples = await scrape(port)
    assert value(samples, "wsroute_messages_in_total", type="wsroute.frame") == 2


async def test_the_app_s_own_error_codes_are_capped(serve: Serve) -> None:
    app = App()

    @app.direct("fail_with")
    async def fail_with(code: str) -> None:
        raise HandlerError(code, "as asked")

    port = await serve(app)
    extra = 5
    async with connect(port) as client:
        for i in range(MAX_APP_ERROR_CODES + extra):
            reply = await client.request("fail_with", f"code_{i}", id=i)
            assert reply["error"]["code"] == f"code_{i}"  # the client still gets its code
        # A code that has its label keeps it; wsroute's own codes always get theirs.
        await client.request("fail_with", "code_0", id="again")
        await client.request("no_such_type", id="unknown")
        samples = await scrape(port)
    errors = {
        dict(labels)["code"]: count
        for (name, labels), count in samples.items()
        if name == "wsroute_errors_total"
    }
    assert errors.pop("code_0") == 2
    assert errors.pop("other") == extra
    assert errors.pop("unknown_type") == 1
    assert sorted(errors) == sorted(f"code_{i}" for i in range(1, MAX_APP_ERROR_CODES))
    assert value(samples, "wsroute_messages_out_total", kind="error") == MAX_APP_ERROR_CODES + 7


def test_every_protocol_error_code_is_builtin() -> None:
    section = DOCS_PROTOCOL.read_text().split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert set(documented) == BUILTIN_ERROR_CODES


async def test_refused_upgrades_by_status(serve: Serve) -> None:
    app = make_app(allowed_origins=["https://ok.example"], max_connections=1)
    port = await serve(app)
    for _ in range(2):
        with pytest.raises(InvalidStatus):
            async with connect(port, origin="https://evil.example"):
                pass
    async with connect(port, origin="https://ok.example"):
        with pytest.raises(InvalidStatus):
            async with connect(port, origin="https://ok.example"):
                pass
        samples = await scrape(port)
    assert value(samples, "wsroute_connections_refused_total", status="403") == 2
    assert value(samples, "wsroute_connections_refused_total", status="503") == 1
    assert value(samples, "wsroute_connections_opened_total") == 1
