"""Faults over real sockets: a client that stops reading, handlers that fail or hang,
and SIGTERM during traffic on a real ``wsroute run`` process.

Each fault is confined to where it happens: the other clients keep being served,
memory stays bounded, and shutdown answers what it took in.
"""

from __future__ import annotations

import json
import re
import signal
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from wsproto.events import TextMessage

from wsroute import App, Connection, Disconnect
from wsroute._server.outbox import Outbox

from .cliproc import StartServer, start
from .rawws import RawWS, open_raw
from .wsclient import WSClient, connect

Serve = Callable[[App], Awaitable[int]]
__all__ = ["start"]  # fixture, imported to be found

TIMEOUT = 10.0


async def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.005)


# -- a client that stops reading ------------------------------------------------------


async def test_client_that_stops_reading_is_closed_and_the_others_get_everything(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox_size, batch, events, fast_count = 16, 4, 60, 200
    # The most frames ever queued on one connection, measured where they are queued.
    deepest = [0]
    put = Outbox.put

    def measured_put(self: Outbox, frame: str | bytes) -> bool:
        queued = put(self, frame)
        deepest[0] = max(deepest[0], len(self))
        return queued

    monkeypatch.setattr(Outbox, "put", measured_put)

    app = App(outbox_size=outbox_size)
    ended: list[Disconnect] = []

    @app.on_disconnect
    async def record(conn: Connection, reason: Disconnect) -> None:
        ended.append(reason)

    port = await serve(app)
    received: list[list[int]] = [[] for _ in range(fast_count)]

    async def fast_client(index: int, task_status: trio.TaskStatus[None]) -> None:
        async with open_raw(port) as ws:
            task_status.started()
            while len(received[index]) < events:
                event = await ws.event(timeout=TIMEOUT)
                assert isinstance(event, TextMessage), event
                received[index].append(json.loads(event.data)["data"]["n"])

    slow_got: list[int] = []

    async def resume_reading(slow: RawWS) -> None:
        """What was already in the socket buffers, then the policy's close frame."""
        closed = await slow.closed()
        assert (closed.code, closed.reason) == (1008, "slow consumer")
        slow_got.extend(json.loads(event.data)["data"]["n"] for event in closed.frames)
        await slow.answer_close()
        await slow.dropped()

    pad = "x" * 8192
    async with trio.open_nursery() as clients:
        for index in range(fast_count):
            await clients.start(fast_client, index)
        # A small receive buffer: the server's writes to it block after a few frames.
        async with open_raw(port, rcvbuf=4096) as slow, trio.open_nursery() as reading:
            slow_port = slow.stream.socket.getsockname()[1]
            await wait_until(lambda: len(app.connections) == fast_count + 1)
            [slow_conn] = [c for c in app.connections if c.request.remote[1] == slow_port]
            closed_at = None
            # Publish in small batches, each one read by every fast client before
            # the next, so only the client that stopped reading falls behind.
            for published in range(batch, events + 1, batch):
                for n in range(published - batch, published):
                    await app.publish("all", "tick", {"n": n, "pad": pad})
                await wait_until(lambda n=published: all(len(r) >= n for r in received))
                if closed_at is None and slow_conn.closing:
                    closed_at = published
                    reading.start_soon(resume_reading, slow)
            # It was closed early, its queue freed, and the others got everything.
            assert closed_at is not None and closed_at <= events * 2 // 3, closed_at
            assert len(slow_conn._outbox) == 0

    assert received == [list(range(events))] * fast_count
    assert deepest[0] <= outbox_size
    # The slow client got a gapless prefix: the frames queued for it were dropped.
    assert slow_got == list(range(len(slow_got))) and len(slow_got) < closed_at
    await wait_until(lambda: any(reason.code == 1008 for reason in ended))
    assert [r for r in ended if r.code == 1008] == [Disconnect(1008, "slow consumer", "server")]


# -- handlers that fail or hang ----------------------------------------------------------


def faulty_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    @app.direct("boom")
    async def boom(n: int) -> int:
        raise RuntimeError(f"handler bug on message {n}")

    @app.direct("hang")
    async def hang() -> None:
        await trio.sleep_forever()

    return app


async def test_handler_that_raises_on_every_message(serve: Serve, caplog: Any) -> None:
    port = await serve(faulty_app())
    count = 30  # more than the invalid-message budget: handler errors do not spend it
    async with connect(port) as client, connect(port) as other:
        for n in range(count):
            await client.send({"type": "boom", "id": n, "data": n})
        replies = [await client.recv() for _ in range(count)]
        assert [r["id"] for r in replies] == list(range(count))
        assert {r["error"]["code"] for r in replies} == {"internal_error"}
        assert not any("handler bug" in json.dumps(r) for r in replies)
        assert (await client.request("ping", id="after"))["data"] == "pong"
        assert (await other.request("ping"))["data"] == "pong"
    logged = [r for r in caplog.records if r.exc_info and "handler bug" in str(r.exc_info[1])]
    assert len(logged) == count


async def test_handler_that_hangs_is_answered_timeout(serve: Serve) -> None:
    timeout = 0.5
    port = await serve(faulty_app(handler_timeout=timeout))
    async with connect(port) as client, connect(port) as other:
        start = trio.current_time()
        await client.send({"type": "hang", "id": 1})
        await client.send({"type": "ping", "id": 2})  # queued behind the hung handler
        # Meanwhile, other connections are served at once.
        for n in range(5):
            assert (await other.request("ping", id=n))["data"] == "pong"
        assert trio.current_time() - start < timeout
        reply = await client.recv()
        assert (reply["id"], reply["error"]["code"]) == (1, "timeout")
        assert trio.current_time() - start >= timeout
        assert await client.recv() == {"type": "ping", "id": 2, "ok": True, "data": "pong"}


# -- SIGTERM during traffic ----------------------------------------------------------------

WORK_APP = """
import logging

import trio

from wsroute import App, Connection

app = App(shutdown_timeout=10)
log = logging.getLogger("workapp")


@app.direct("work")
async def work(n: int, conn: Connection) -> int:
    log.info("handled %s %d", conn.request.query["name"], n)
    await trio.sleep(0.02)
    return n
"""


class Worker:
    """A client that keeps up to ``window`` requests in flight until it is closed."""

    def __init__(self, name: str, client: WSClient, window: int = 8) -> None:
        self.name = name
        self.client = client
        self.sent: list[int] = []
        self.replies: list[int] = []
        self.replies_after_signal = 0
        self.signalled = False
        self._window = trio.Semaphore(window)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send)
            await self._receive()
            nursery.cancel_scope.cancel()

    async def _send(self) -> None:
        n = 0
        while True:
            await self._window.acquire()
            try:
                await self.client.send({"type": "work", "id": n, "data": n})
            except ConnectionClosed:
                return
            self.sent.append(n)
            n += 1

    async def _receive(self) -> None:
        while True:
            try:
                reply = await self.client.recv(timeout=TIMEOUT)
            except ConnectionClosed:
                return
            assert reply == {"type": "work", "id": reply["id"], "ok": True, "data": reply["id"]}
            self.replies.append(reply["id"])
            self.replies_after_signal += self.signalled
            self._window.release()


async def test_sigterm_during_traffic_answers_every_request_taken_in(
    tmp_path: Path, start: StartServer
) -> None:
    (tmp_path / "workapp.py").write_text(textwrap.dedent(WORK_APP))
    server = await start("run", "workapp:app", "--port", "0", cwd=tmp_path)
    port = await server.wait_listening()
    async with (
        connect(port, "/?name=c0") as c0,
        connect(port, "/?name=c1") as c1,
        connect(port, "/?name=c2") as c2,
        connect(port, "/?name=c3") as c3,
        connect(port, "/?name=c4") as c4,
        connect(port, "/?name=c5") as c5,
    ):
        workers = [Worker(f"c{i}", c) for i, c in enumerate([c0, c1, c2, c3, c4, c5])]
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as traffic:
                for worker in workers:
                    traffic.start_soon(worker.run)
                await wait_until(lambda: all(len(w.replies) >= 20 for w in workers))
                server.signal(signal.SIGTERM)
                for worker in workers:
                    worker.signalled = True
        closes = [(w.client.close_code, w.client.close_reason) for w in workers]
        assert closes == [(1001, "server shutting down")] * len(workers)
    assert await server.exit_code() == 0
    await server.wait_for("shutting down")  # stderr read to the end

    handled: dict[str, list[int]] = {w.name: [] for w in workers}
    for line in server.lines:
        if match := re.search(r" INFO handled (c\d) (\d+)$", line):
            handled[match[1]].append(int(match[2]))
    for worker in workers:
        # Everything the server took in was answered, in order, before the 1001 ...
        assert worker.replies == handled[worker.name], worker.name
        assert worker.replies == list(range(len(worker.replies))), worker.name
        # ... and what it did not answer, it never handled.
        assert set(worker.sent) >= set(worker.replies)
    # Handlers were in flight at the signal, and they finished.
    assert sum(w.replies_after_signal for w in workers) > 0
    assert any("received SIGTERM, shutting down gracefully" in line for line in server.lines)
