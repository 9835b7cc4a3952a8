"""A connection's bounded outbox (``wsroute._server.outbox``) and its slow-consumer policies."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from wsroute import App, Connection, Disconnect, SlowConsumerPolicy
from wsroute._server.outbox import Outbox
from wsroute._server.writer import PENDING, QUEUE, WRITTEN
from wsroute._wire.frames import Outgoing

from .servers import recv_all
from .wsclient import connect

CLOSE = SlowConsumerPolicy.CLOSE
DROP_OLDEST = SlowConsumerPolicy.DROP_OLDEST
DROP_NEWEST = SlowConsumerPolicy.DROP_NEWEST


class Overflow:
    """Counts ``on_overflow`` calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def outbox(maxsize: int = 3, policy: SlowConsumerPolicy = CLOSE) -> tuple[Outbox, Overflow]:
    overflow = Overflow()
    return Outbox(maxsize, policy, overflow), overflow


def test_policy_values() -> None:
    assert [p.value for p in SlowConsumerPolicy] == ["close", "drop_oldest", "drop_newest"]
    assert SlowConsumerPolicy("drop_newest") is DROP_NEWEST


async def test_put_then_get_batch_in_order() -> None:
    box, overflow = outbox(maxsize=10)
    assert all(box.put(frame) for frame in ["a", "b", "c"])
    assert len(box) == 3
    assert await box.get_batch() == ["a", "b", "c"]
    assert len(box) == 0
    assert box.put("d")
    assert await box.get_batch() == ["d"]
    assert (box.dropped, overflow.calls, box.closed) == (0, 0, False)


async def test_get_batch_waits_for_a_put(nursery: trio.Nursery) -> None:
    box, _ = outbox()
    batches: list[list[str]] = []

    async def consume() -> None:
        batches.append(await box.get_batch())

    nursery.start_soon(consume)
    await trio.testing.wait_all_tasks_blocked()
    assert batches == []
    box.put("a")
    box.put("b")
    await trio.testing.wait_all_tasks_blocked()
    assert batches == [["a", "b"]]


async def test_cancelled_get_batch_leaves_the_queue_untouched(
    autojump_clock: trio.abc.Clock,
) -> None:
    box, _ = outbox()
    with trio.move_on_after(1) as scope:
        await box.get_batch()
    assert scope.cancelled_caught
    box.put("a")
    with trio.fail_after(1):
        assert await box.get_batch() == ["a"]


async def test_drop_newest_keeps_old_frames_and_counts_drops() -> None:
    box, overflow = outbox(maxsize=2, policy=DROP_NEWEST)
    assert [box.put(frame) for frame in ["a", "b", "c", "d"]] == [True, True, False, False]
    assert box.dropped == 2
    assert await box.get_batch() == ["a", "b"]
    assert box.put("e")
    assert await box.get_batch() == ["e"]
    assert overflow.calls == 0
    assert not box.closed


async def test_drop_oldest_evicts_the_oldest_frames() -> None:
    box, overflow = outbox(maxsize=2, policy=DROP_OLDEST)
    assert all(box.put(frame) for frame in ["a", "b", "c", "d"])
    assert box.dropped == 2
    assert len(box) == 2
    assert await box.get_batch() == ["c", "d"]
    assert overflow.calls == 0
    assert not box.closed


async def test_close_policy_clears_closes_and_reports_once() -> None:
    box, overflow = outbox(maxsize=2, policy=CLOSE)
    assert box.put("a")
    assert box.put("b")
    assert overflow.calls == 0
    assert not box.put("c")
    assert overflow.calls == 1
    assert box.closed
    assert len(box) == 0
    assert box.dropped == 3
    assert not box.put("d")
    assert not box.put("e")
    assert overflow.calls == 1
    assert box.dropped == 5
    assert await box.get_batch() is None


async def test_close_policy_wakes_a_waiting_consumer(nursery: trio.Nursery) -> None:
    box, overflow = outbox(maxsize=1, policy=CLOSE)
    batches: list[list[Outgoing] | None] = []

    async def consume() -> None:
        batches.append(await box.get_batch())
        batches.append(await box.get_batch())

    box.put("a")
    box.put("b")  # overflows before the consumer ever runs
    nursery.start_soon(consume)
    await trio.testing.wait_all_tasks_blocked()
    assert batches == [None, None]
    assert overflow.calls == 1


async def test_close_lets_the_consumer_drain_then_returns_none() -> None:
    box, overflow = outbox(maxsize=5)
    box.put("a")
    box.put("b")
    box.close()
    assert box.closed
    assert not box.put("c")
    assert box.dropped == 1
    assert await box.get_batch() == ["a", "b"]
    assert await box.get_batch() is None
    assert await box.get_batch() is None
    assert overflow.calls == 0


async def test_close_wakes_a_waiting_consumer(nursery: trio.Nursery) -> None:
    box, _ = outbox()
    batches: list[list[Outgoing] | None] = []

    async def consume() -> None:
        batches.append(await box.get_batch())

    nursery.start_soon(consume)
    await trio.testing.wait_all_tasks_blocked()
    box.close()
    await trio.testing.wait_all_tasks_blocked()
    assert batches == [None]


async def test_discard_drops_everything() -> None:
    box, overflow = outbox(maxsize=5)
    for frame in ["a", "b", "c"]:
        box.put(frame)
    box.discard()
    assert box.closed
    assert len(box) == 0
    assert box.dropped == 3
    assert not box.put("d")
    assert box.dropped == 4
    assert await box.get_batch() is None
    assert overflow.calls == 0


@pytest.mark.parametrize("policy", list(SlowConsumerPolicy))
async def test_never_holds_more_than_maxsize_frames(policy: SlowConsumerPolicy) -> None:
    box, _ = outbox(maxsize=4, policy=policy)
    for n in range(50):
        box.put(f"frame {n}")
        assert len(box) <= 4
    batch = await box.get_batch() or []
    assert len(batch) <= 4
    if policy is DROP_OLDEST:
        assert batch == ["frame 46", "frame 47", "frame 48", "frame 49"]
    elif policy is DROP_NEWEST:
        assert batch == ["frame 0", "frame 1", "frame 2", "frame 3"]
    else:
        assert batch == []
    assert box.dropped == 50 - len(batch)


async def test_interleaved_producer_and_consumer_keep_order(nursery: trio.Nursery) -> None:
    box, _ = outbox(maxsize=100)
    received: list[str] = []

    async def consume() -> None:
        while batch := await box.get_batch():
            received.extend(batch)

    nursery.start_soon(consume)
    for n in range(30):
        box.put(str(n))
        if n % 7 == 0:
            await trio.testing.wait_all_tasks_blocked()
    box.close()
    await trio.testing.wait_all_tasks_blocked()
    assert received == [str(n) for n in range(30)]


# -- the socket side: direct writes and a writer started on first need ------------------


class Socket:
    """Stands in for ``WebSocket.write_now``: answers each frame with ``verdict``."""

    def __init__(self, verdict: int) -> None:
        self.verdict = verdict
        self.written: list[Outgoing] = []

    def __call__(self, frame: Outgoing) -> int:
        if self.verdict != QUEUE:
            self.written.append(frame)
        return self.verdict


class Spawner:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_an_idle_socket_takes_frames_directly_and_no_writer_starts() -> None:
    box, _ = outbox()
    socket, spawn = Socket(WRITTEN), Spawner()
    box.attach(socket, spawn)
    for frame in ["a", "b", "c", "d", "e"]:  # more than maxsize: none is queued
        assert box.put(frame)
    assert socket.written == ["a", "b", "c", "d", "e"]
    assert len(box) == 0
    assert spawn.calls == 0


async def test_a_busy_socket_queues_and_starts_the_writer_once() -> None:
    box, _ = outbox()
    socket, spawn = Socket(QUEUE), Spawner()
    box.attach(socket, spawn)
    box.put("a")
    socket.verdict = WRITTEN  # idle again, but "a" is queued: order comes first
    box.put("b")
    assert socket.written == []
    assert spawn.calls == 1
    assert await box.get_batch() == ["a", "b"]


async def test_a_partial_write_asks_the_writer_to_flush() -> None:
    box, _ = outbox()
    socket, spawn = Socket(PENDING), Spawner()
    box.attach(socket, spawn)
    assert box.put("a")
    assert socket.written == ["a"]
    assert spawn.calls == 1
    assert await box.get_batch() == []  # nothing queued, but the socket must flush
    box.close()
    assert await box.get_batch() is None


async def test_closing_starts_a_writer_to_report_the_drain() -> None:
    box, _ = outbox()
    spawn = Spawner()
    box.attach(Socket(WRITTEN), spawn)
    box.close()
    assert spawn.calls == 1
    assert await box.get_batch() is None


def test_frames_queued_before_attach_start_the_writer() -> None:
    box, _ = outbox()
    box.put("early")
    spawn = Spawner()
    box.attach(Socket(WRITTEN), spawn)
    assert spawn.calls == 1


def test_detached_outbox_neither_writes_nor_spawns() -> None:
    box, _ = outbox()
    socket, spawn = Socket(WRITTEN), Spawner()
    box.attach(socket, spawn)
    box.detach()
    box.put("a")
    box.discard()
    assert socket.written == []
    assert spawn.calls == 0


# -- the close policy in a served app, over real sockets ----------------------------


async def test_slow_consumer_is_closed_while_others_keep_receiving(serve):
    app = App(outbox_size=8, close_timeout=5)
    ended: list[Disconnect] = []
    slow_gone = trio.Event()

    @app.on_disconnect
    async def record(conn: Connection, reason: Disconnect) -> None:
        ended.append(reason)
        if reason.code == 1008:
            slow_gone.set()

    @app.broadcast("blob")
    async def blob(n: int) -> dict[str, Any]:
        return {"n": n, "pad": "x" * 65536}

    port = await serve(app)
    count = 300
    # The slow client buffers at most one message and then stops reading the socket;
    # the fast one reads everything as it arrives, whenever the test gets to it.
    async with connect(port, max_queue=1) as slow, connect(port, max_queue=None) as fast:
        for n in range(count):
            await fast.send({"type": "blob", "data": n})
        received = [(await fast.recv(timeout=10))["data"]["n"] for _ in range(count)]
        assert received == list(range(count))
        code, reason = await slow.wait_closed(timeout=10)
        assert (code, reason) == (1008, "slow consumer")
        with trio.fail_after(5):
            await slow_gone.wait()
        assert [r for r in ended if r.code == 1008] == [Disconnect(1008, "slow consumer", "server")]
        # The fast client is unaffected.
        await fast.send({"type": "blob", "id": "last", "data": -1})
        frames = await recv_all(fast, 2)
        assert {f.get("id") for f in frames} == {None, "last"}
