"""Local fan-out (``wsroute._server.hub``): one framed event shared by all recipients,
refcounted broker topics; and topics between clients of a served app."""

from __future__ import annotations

import attrs
import trio
import trio.testing

from wsroute import App, Connection, SlowConsumerPolicy
from wsroute._protocol import MSGPACK_EVENT, encode_event
from wsroute._request import Request
from wsroute._server.hub import Hub
from wsroute._wire.frames import Prepared
from wsroute.brokers import MemoryBroker

from .servers import assert_nothing_pending, items_app
from .wsclient import connect


def connection(hub: Hub, outbox_size: int = 8) -> Connection:
    return Connection(
        Request.build("/"),
        hub=hub,
        unstructure=lambda value: value,
        outbox_size=outbox_size,
        policy=SlowConsumerPolicy.CLOSE,
    )


def texts(conn: Connection) -> list[bytes]:
    """The payloads of the (short) text frames queued on ``conn``."""
    frames = list(conn._outbox._frames)
    assert all(isinstance(frame, Prepared) and len(frame.wire) < 127 for frame in frames)
    return [frame.wire[2:] for frame in frames]  # type: ignore[union-attr]


async def test_an_event_is_framed_once_for_every_recipient():
    broker = MemoryBroker()
    async with broker.connect() as session:
        hub = Hub(session)
        conns = [connection(hub) for _ in range(3)]
        for conn in conns:
            await conn.subscribe("t")
        event = b'{"type":"x","topic":"t","data":1}'
        hub.deliver("t", event)
        frames = [conn._outbox._frames[0] for conn in conns]
        assert isinstance(frames[0], Prepared)
        # FIN + text opcode, unmasked length, then the event as the broker gave it.
        assert frames[0].wire == bytes([0x81, len(event)]) + event
        assert all(frame is frames[0] for frame in frames)


async def test_an_event_with_bytes_is_decoded_once_and_a_broken_one_dropped(caplog):
    broker = MemoryBroker()
    async with broker.connect() as session:
        hub = Hub(session)
        conns = [connection(hub) for _ in range(2)]
        for conn in conns:
            await conn.subscribe("t")
        hub.deliver("t", encode_event("x", "t", {"raw": b"\x01"}))
        frames = [conn._outbox._frames.pop(0) for conn in conns]
        assert frames[0] is frames[1]
        assert isinstance(frames[0], Prepared)
        assert frames[0].payload == b'{"type":"x","topic":"t","data":{"raw":"AQ=="}}'
        # Only a bug could send a broken one; it is reported, never sent.
        hub.deliver("t", bytes([MSGPACK_EVENT]) + b"\xc1")
        assert texts(conns[0]) == texts(conns[1]) == []
        assert "dropped an event on topic 't' that does not decode" in caplog.text


async def test_broker_topic_follows_the_first_and_last_local_subscriber():
    broker = MemoryBroker()
    async with broker.connect() as session:
        hub = Hub(session)
        a, b = connection(hub), connection(hub)
        await a.subscribe("room")
        await b.subscribe("room")
        await a.subscribe("room")  # idempotent per connection
        assert session._counts["room"] == 1  # type: ignore[attr-defined]
        assert hub.subscribers("room") == 2
        await a.unsubscribe("room")
        assert session._counts["room"] == 1  # type: ignore[attr-defined]
        await hub.leave(b)
        assert "room" not in session._counts  # type: ignore[attr-defined]
        assert "room" not in broker._subscribers
        assert b.topics == frozenset()


async def test_a_full_outbox_does_not_stop_the_others(autojump_clock):
    broker = MemoryBroker()
    async with broker.connect() as session:
        hub = Hub(session)
        slow, fine = connection(hub, outbox_size=2), connection(hub, outbox_size=100)
        await slow.subscribe("t")
        await fine.subscribe("t")
        for n in range(5):
            hub.deliver("t", str(n).encode())
        assert slow.closing and slow._disconnect is not None
        assert (slow._disconnect.code, slow._disconnect.reason) == (1008, "slow consumer")
        assert len(slow._outbox) == 0  # memory released at once
        assert texts(fine) == [b"0", b"1", b"2", b"3", b"4"]


async def test_pump_delivers_what_the_broker_yields(autojump_clock):
    broker = MemoryBroker()
    async with broker.connect() as session, broker.connect() as publisher:
        hub = Hub(session)
        conn = connection(hub)
        await conn.subscribe("t")
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.pump)
            await publisher.publish("t", b"hello")
            await trio.testing.wait_all_tasks_blocked()
            assert texts(conn) == [b"hello"]
            nursery.cancel_scope.cancel()


# -- topics between clients, over real sockets -------------------------------------


@attrs.frozen
class Room:
    room: str


async def test_topic_callable_reaches_only_that_room(serve):
    app = App()

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    @app.direct("join")
    async def join(room: Room, conn: Connection) -> list[str]:
        await conn.unsubscribe("all")
        await conn.subscribe(f"room:{room.room}")
        return sorted(t for t in conn.topics if not t.startswith("conn:"))

    @app.broadcast("say", topic=lambda msg, conn: f"room:{msg['room']}")
    async def say(msg: dict[str, str]) -> str:
        return msg["text"]

    port = await serve(app)
    async with connect(port) as a, connect(port) as b, connect(port) as c:
        assert (await a.request("join", {"room": "x"}))["data"] == ["room:x"]
        assert (await b.request("join", {"room": "x"}))["data"] == ["room:x"]
        assert (await c.request("join", {"room": "y"}))["data"] == ["room:y"]
        await a.send({"type": "say", "data": {"room": "x", "text": "hi"}})
        expected = {"type": "say", "topic": "room:x", "data": "hi"}
        assert await a.recv() == expected
        assert await b.recv() == expected
        await assert_nothing_pending(c)


async def test_unsubscribed_connection_misses_broadcasts(serve):
    app = items_app()

    @app.direct("quiet")
    async def quiet(conn: Connection) -> list[str]:
        await conn.unsubscribe("all")
        return sorted(conn.topics - {f"conn:{conn.id}"})

    port = await serve(app)
    async with connect(port) as alice, connect(port) as bob:
        assert (await bob.request("quiet"))["data"] == []
        await alice.send({"type": "create", "data": {"id": 1, "name": "a"}})
        await alice.recv()
        await assert_nothing_pending(bob)
