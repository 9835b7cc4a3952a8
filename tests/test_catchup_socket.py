"""Live gaps filled from history, and the recovery floor, seen at a real socket.

tests/test_catchup.py drives these cases through the in-memory test client; here the
app is served on 127.0.0.1 by wsroute's own server and its clients speak protocol v1
JSON over trio-websocket, so what is asserted is what goes on the wire: every event
once, in order, with its offset and epoch, and the ``wsroute.recovery`` events
between them. The memory broker behind test_catchup.py's lossy ``Link`` loses or
holds back live events while it stays connected; the overflowing backlog is a real
Redis Cluster's.

Real time throughout: trio's autojump clock jumps whenever no task can run, also
while bytes are still on their way through the kernel (or from Redis), so every wait
is bounded instead (``TIMEOUT``) and none is waited out when the test passes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from wsroute import App
from wsroute.brokers import MemoryBroker, RedisClusterBroker
from wsroute.testing import open_app

from .rediscluster import RedisCluster, redis_cluster
from .redistools import TIMEOUT
from .test_catchup import RECOVERY, Link, Linked, make_app, publish

__all__ = ["redis_cluster"]  # a fixture, imported to be found

Serve = Callable[[App], Awaitable[int]]
Message = dict[str, Any]


class WireClient:
    """One connection speaking ``wsroute.v1.json``: the frames as the server sent
    them, decoded, with replies set apart from events."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._early: list[Message] = []  # events that came before a reply

    async def receive(self) -> Message:
        with trio.fail_after(TIMEOUT):
            frame = await self.ws.get_message()
        assert isinstance(frame, str), f"a binary frame under JSON: {frame!r}"
        message: Message = json.loads(frame)
        return message

    async def join(self, room: str, id: int = 1) -> None:
        """Join ``room`` and wait for the reply; events that come first are kept."""
        await self.ws.send_message(json.dumps({"type": "join", "id": id, "data": {"room": room}}))
        for _ in range(10_000):
            message = await self.receive()
            if "ok" not in message:
                self._early.append(message)
                continue
            assert message == {"type": "join", "id": id, "ok": True, "data": None}
            return
        raise AssertionError("no reply to join")

    async def events(self, count: int) -> list[Message]:
        """The next ``count`` events; a reply among them fails the test."""
        events, self._early = self._early[:count], self._early[count:]
        while len(events) < count:
            message = await self.receive()
            assert "ok" not in message, f"an unexpected reply: {message}"
            events.append(message)
        return events


@asynccontextmanager
async def wire_client(port: int, recover: Message | None = None) -> AsyncIterator[WireClient]:
    """A client of the app served on ``port``, presenting ``recover`` (topic:
    ``[offset, epoch]``) as its last positions if given."""
    url = f"ws://127.0.0.1:{port}/"
    if recover is not None:
        url += "?" + urlencode({"wsroute.recover": json.dumps(recover)})
    async with open_websocket_url(
        url,
        subprotocols=["wsroute.v1.json"],
        connect_timeout=TIMEOUT,
        disconnect_timeout=TIMEOUT,
    ) as ws:
        assert ws.subprotocol == "wsroute.v1.json"
        yield WireClient(ws)


def event(n: int, offset: int, epoch: str, topic: str = "room:1") -> Message:
    """A ``msg`` event as the wire carries it."""
    return {"type": "msg", "topic": topic, "data": n, "offset": offset, "epoch": epoch}


def recovery(offset: int, epoch: str, missed: int, topic: str = "room:1") -> Message:
    """A ``wsroute.recovery`` event that says the gap was filled."""
    data = {"recovered": True, "offset": offset, "epoch": epoch, "missed": missed}
    return {"type": RECOVERY, "topic": topic, "data": data}


@asynccontextmanager
async def served_behind_link(serve: Serve) -> AsyncIterator[tuple[int, Link, App]]:
    """An app served on 127.0.0.1 whose broker is a memory broker behind a ``Link``,
    and an app publishing on that memory broker directly: its port, the link, the
    publisher."""
    memory, link = MemoryBroker(), Link()
    publisher = make_app(memory)
    port = await serve(make_app(Linked(memory, link)))
    async with open_app(publisher):
        yield port, link, publisher


# -- live events that never reached the process --------------------------------------


async def test_live_events_that_never_arrived_reach_the_socket_from_history(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        served_behind_link(serve) as (port, link, publisher),
        wire_client(port) as client,
        wire_client(port) as bystander,
    ):
        await client.join("room:1")
        await bystander.join("room:2")
        await publish(publisher, [0])
        await publish(publisher, [0], topic="room:2")
        [first] = await client.events(1)
        epoch = first["epoch"]
        assert first == event(0, 1, epoch)
        link.losing = 3  # offsets 2 to 4, the broker not lost
        await publish(publisher, range(1, 5))
        await publish(publisher, [1], topic="room:2")
        assert await client.events(5) == [
            *[event(n, n + 1, epoch) for n in range(1, 5)],  # offset 5 from history too
            recovery(5, epoch, 4),
        ]
        await publish(publisher, [5])  # live: what came before it is all there was
        assert await client.events(1) == [event(5, 6, epoch)]
        assert link.reads == [("room:1", 1)]  # one read, after the last one delivered
        # Another topic is untouched.
        [zero, one] = await bystander.events(2)
        assert (zero["data"], one["data"], one["offset"]) == (0, 1, 2)
    assert "live events of topic 'room:1' after offset 1" in caplog.text


# -- the recovery floor ------------------------------------------------------------------


async def test_live_copies_of_what_a_reconnected_client_read_do_not_reach_its_socket(
    serve: Serve,
) -> None:
    async with served_behind_link(serve) as (port, link, publisher), wire_client(port) as staying:
        await staying.join("room:1")
        async with wire_client(port) as leaving:
            await leaving.join("room:1")
            await publish(publisher, range(2))
            seen = await leaving.events(2)
        epoch = seen[-1]["epoch"]
        assert seen == [event(0, 1, epoch), event(1, 2, epoch)]
        await publish(publisher, [2])  # while it is away: offset 3, live here
        assert await staying.events(3) == [event(n, n + 1, epoch) for n in range(3)]
        link.delaying = True  # offsets 4 to 6 still on their way to this process
        await publish(publisher, range(3, 6))
        async with wire_client(port, recover={"room:1": [2, epoch]}) as back:
            await back.join("room:1")  # it reads offsets 3 to 6 from history
            assert await back.events(5) == [
                *[event(n, n + 1, epoch) for n in range(2, 6)],
                recovery(6, epoch, 4),
            ]
            link.delaying = False
            await publish(publisher, [6])  # the late copies come, then offset 7
            assert await staying.events(4) == [event(n, n + 1, epoch) for n in range(3, 7)]
            assert await back.events(1) == [event(6, 7, epoch)]  # no copy before it
        assert link.reads == [("room:1", 2)]  # its own recovery's: no gap was found


# -- against a Redis Cluster: a backlog that overflows ---------------------------------


async def test_events_dropped_by_an_overflowing_backlog_reach_the_socket_once_in_order(
    serve: Serve, redis_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # One reader per shard feeds the session's backlog; two places are too few for
    # what three shards send at once, so some events are dropped, never silently.
    # (A single redis-server's one reader never filled it in trials.)
    app = make_app(RedisClusterBroker(redis_cluster.url(), backlog=2, prefix="gaps-socket:"))
    publisher = make_app(RedisClusterBroker(redis_cluster.url(), prefix="gaps-socket:"))
    rooms, count = [f"room:{n}" for n in range(12)], 100  # rooms on every shard
    port = await serve(app)
    async with open_app(publisher), wire_client(port) as client:
        for n, room in enumerate(rooms):
            await client.join(room, id=n)
        for room in rooms:
            await publish(publisher, [-1], topic=room)
        first: dict[str, Message] = {}  # where each room stood before the burst
        for _ in range(len(rooms) * 2):
            [message] = await client.events(1)
            if message["type"] == "msg":
                first[message["topic"]] = message
            if len(first) == len(rooms):
                break
        async with trio.open_nursery() as nursery:
            for room in rooms:
                nursery.start_soon(publish, publisher, range(count), room)
        for room in rooms:  # last, live: whatever came before it is all there was
            await publish(publisher, [count], topic=room)
        received: list[Message] = []
        for _ in range(len(rooms) * (count + 2) * 2):
            received += await client.events(1)
            if sum(m["type"] == "msg" and m["data"] == count for m in received) == len(rooms):
                break
    assert "the consumer fell 2 messages behind" in caplog.text  # it did drop
    for room in rooms:  # every event once, in order, with its offset
        start, epoch = first[room]["offset"], first[room]["epoch"]
        mine = [m for m in received if m["topic"] == room and m["type"] == "msg"]
        assert mine == [event(n, start + 1 + n, epoch, room) for n in range(count + 1)]
    markers = [m for m in received if m["type"] == RECOVERY]
    assert markers and all(m["data"]["recovered"] is True for m in markers)
