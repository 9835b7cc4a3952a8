"""Recovery (``wsroute._server.recovery``): a client that presents its last position
gets exactly what it missed, in order, then a ``wsroute.recovery`` event, then live
events; a gap that cannot be filled is said so, never left silent.

On the memory broker through the in-memory test kit; tests/test_redis_history.py
does the same over real sockets and a real Redis.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from wsroute import App, Connection, History
from wsroute._server import recovery
from wsroute.brokers import BrokerSession, MemoryBroker, StateListener
from wsroute.contracts import _envelopes as envelopes
from wsroute.testing import Event, HandshakeRejected, TestClient, open_app, open_client


@attrs.frozen
class Join:
    room: str


def make_app(**options: Any) -> App:
    options.setdefault("history", {"room:*": History(size=100, ttl=300)})
    app = App(**options)

    @app.direct("join")
    async def join(req: Join, conn: Connection) -> None:
        await conn.subscribe(f"room:{req.room}")

    @app.broadcast("say", topic=lambda _, conn: "room:1", exclude_sender=True)
    async def say(text: str) -> str:
        return text

    return app


async def publish(app: App, first: int, last: int, topic: str = "room:1") -> None:
    for n in range(first, last + 1):
        await app.publish(topic, "msg", n)


async def events_until_recovery(client: TestClient) -> tuple[list[Event], Event]:
    """The events before the ``wsroute.recovery`` event, and that event."""
    seen = []
    for _ in range(10_000):
        event = await client.receive()
        assert isinstance(event, Event), event
        if event.type == "wsroute.recovery":
            return seen, event
        seen.append(event)
    raise AssertionError("no wsroute.recovery event")


async def read_until(
    client: TestClient, seen: list[Event], last: int, *, slow: bool = False
) -> None:
    """Append the events ``client`` receives to ``seen`` until both the ``msg`` event
    ``last`` and the ``wsroute.recovery`` event came; with ``slow``, read one event
    per 10 ms until the ``wsroute.recovery`` event."""
    for _ in range(10_000):
        event = await client.receive()
        if not isinstance(event, Event):
            continue  # the reply to join
        seen.append(event)
        recovered = any(e.type == "wsroute.recovery" for e in seen)
        if recovered and any(e.type == "msg" and e.data == last for e in seen):
            return
        if slow and not recovered:
            await trio.sleep(0.01)
    raise AssertionError(f"no msg {last} and wsroute.recovery event")


async def first_position(app: App) -> tuple[int, str]:
    """Where room:1 stands after one event seen by a client that then left."""
    async with open_client(app) as client:
        await client.request("join", {"room": "1"})
        await app.publish("room:1", "msg", 0)
        event = await client.receive()
        assert isinstance(event, Event) and event.offset is not None and event.epoch
        return event.offset, event.epoch


async def test_missed_events_come_in_order_then_the_marker_then_live_ones() -> None:
    app = make_app()
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 50)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"}, id=1)
            missed, marker = await events_until_recovery(client)
            assert [e.data for e in missed] == list(range(1, 51))
            assert [e.offset for e in missed] == list(range(offset + 1, offset + 51))
            assert {e.epoch for e in missed} == {epoch}
            assert marker.topic == "room:1"
            assert marker.data == {
                "recovered": True,
                "offset": offset + 50,
                "epoch": epoch,
                "missed": 50,
            }
            assert (await client.expect_reply(1)).type == "join"
            await app.publish("room:1", "msg", 51)
            live = await client.expect_event("msg")
            assert (live.data, live.offset) == (51, offset + 51)


async def test_events_published_during_recovery_follow_without_gap_or_duplicate() -> None:
    # A small outbox makes recovery wait for room while publishers keep going.
    app = make_app(outbox_size=8, history={"room:*": History(size=1000, ttl=300)})
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 100)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            seen: list[Event] = []

            async def read() -> None:
                await read_until(client, seen, 150)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await client.send("join", {"room": "1"})
                await publish(app, 101, 150)
            messages = [e for e in seen if e.type == "msg"]
            assert [e.data for e in messages] == list(range(1, 151))
            markers = [e for e in seen if e.type == "wsroute.recovery"]
            assert len(markers) == 1 and markers[0].data["recovered"] is True
            # Every event before the marker was missed; every one after it is live.
            cut = seen.index(markers[0])
            assert markers[0].data["missed"] == cut
            assert markers[0].data["offset"] == seen[cut - 1].offset


async def test_a_client_that_missed_nothing_recovers_with_nothing() -> None:
    app = make_app()
    async with open_app(app):
        offset, epoch = await first_position(app)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"})
            missed, marker = await events_until_recovery(client)
            assert missed == []
            assert marker.data == {"recovered": True, "offset": offset, "epoch": epoch, "missed": 0}


async def test_a_position_that_fell_out_of_history_is_too_old() -> None:
    app = make_app(history={"room:*": History(size=5, ttl=300)})
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 20)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"})
            missed, marker = await events_until_recovery(client)
            assert missed == []  # nothing partial
            assert marker.data == {
                "recovered": False,
                "offset": offset + 20,
                "epoch": epoch,
                "missed": 0,
                "reason": "too_old",
            }
            await app.publish("room:1", "msg", 21)
            assert (await client.expect_event("msg")).offset == offset + 21


async def test_events_older_than_the_ttl_are_gone(autojump_clock: trio.abc.Clock) -> None:
    app = make_app(history={"room:*": History(size=100, ttl=60)})
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 3)
        await trio.sleep(61)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"})
            missed, marker = await events_until_recovery(client)
            assert missed == [] and marker.data["reason"] == "too_old"
            assert marker.data["offset"] == offset + 3


async def test_another_epoch_cannot_be_recovered() -> None:
    broker = MemoryBroker()
    app = make_app(broker=broker)
    async with open_app(app):
        offset, epoch = await first_position(app)
    restarted = make_app(broker=MemoryBroker())  # the history was lost with the broker
    async with open_app(restarted):
        await publish(restarted, 1, 3)
        async with open_client(restarted, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"})
            missed, marker = await events_until_recovery(client)
            assert missed == []
            assert marker.data["recovered"] is False
            assert marker.data["reason"] == "epoch_changed"
            assert marker.data["offset"] == 3 and marker.data["epoch"] != epoch


async def test_an_offset_ahead_of_the_topic_is_unknown() -> None:
    app = make_app()
    async with open_app(app):
        offset, epoch = await first_position(app)
        async with open_client(app, recover={"room:1": (offset + 5, epoch)}) as client:
            await client.send("join", {"room": "1"})
            _, marker = await events_until_recovery(client)
            assert marker.data["reason"] == "unknown_offset"
            assert (marker.data["offset"], marker.data["epoch"]) == (offset, epoch)


async def test_a_topic_without_history_says_so() -> None:
    app = make_app(history={"other:*": History(size=10, ttl=10)})
    async with open_app(app), open_client(app, recover={"room:1": (3, "abcdefgh")}) as client:
        await client.send("join", {"room": "1"})
        missed, marker = await events_until_recovery(client)
        assert missed == []
        assert marker.data == {
            "recovered": False,
            "offset": None,
            "epoch": None,
            "missed": 0,
            "reason": "no_history",
        }


async def test_a_position_is_used_once_and_only_for_its_topic() -> None:
    app = make_app()
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 2)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.request("join", {"room": "2"})  # no position: live only
            await client.send("join", {"room": "1"}, id=1)
            missed, marker = await events_until_recovery(client)
            assert [e.data for e in missed] == [1, 2] and marker.data["recovered"]
            await client.expect_reply(1)
            await client.request("join", {"room": "1"})  # already subscribed: nothing
            await client.expect_no_message()


async def test_an_event_that_skips_its_sender_skips_only_that_connection() -> None:
    app = make_app()
    async with open_app(app):
        offset, epoch = await first_position(app)
        async with open_client(app) as sender:
            await sender.request("join", {"room": "1"})
            await sender.request("say", "hello")
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"})
            missed, marker = await events_until_recovery(client)
            assert [(e.type, e.data) for e in missed] == [("say", "hello")]
            assert marker.data["missed"] == 1


async def test_recovery_speaks_msgpack_too() -> None:
    app = make_app()
    async with open_app(app):
        offset, epoch = await first_position(app)
        await app.publish("room:1", "blob", {"raw": b"\x00\x01"})
        async with open_client(app, msgpack=True, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"})
            missed, marker = await events_until_recovery(client)
            assert [(e.data, e.offset, e.epoch) for e in missed] == [
                ({"raw": b"\x00\x01"}, offset + 1, epoch)
            ]
            assert marker.data["recovered"] is True


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"t": 3}', "is not [offset, epoch]"),
        ('{"t": [-1, "e"]}', "is not [offset, epoch]"),
        ('{"t": [1.0, "e"]}', "is not [offset, epoch]"),
        ('{"t": [1, ""]}', "is not [offset, epoch]"),
        ('{"t": [1, "e", 2]}', "is not [offset, epoch]"),
        ('{"": [1, "e"]}', "an empty topic"),
    ],
)
async def test_a_malformed_position_is_refused_with_400(value: str, why: str) -> None:
    app = make_app()
    with pytest.raises(HandshakeRejected) as rejected:
        async with open_client(app, query={"wsroute.recover": value}):
            pass
    assert rejected.value.status == 400
    assert b"invalid wsroute.recover" in rejected.value.body
    assert why.encode() in rejected.value.body


async def test_too_many_positions_are_refused() -> None:
    app = make_app()
    positions = {f"t{n}": (1, "e") for n in range(257)}
    with pytest.raises(HandshakeRejected) as rejected:
        async with open_client(app, recover=positions):
            pass
    assert rejected.value.status == 400 and b"more than 256 topics" in rejected.value.body


async def test_live_events_beyond_what_is_held_are_read_again_from_history(
    autojump_clock: trio.abc.Clock,
) -> None:
    # outbox_size=2 holds two live events per recovering connection: the 30 published
    # while the client reads slowly overflow it, and are read from history instead.
    app = make_app(outbox_size=2, history={"room:*": History(size=1000, ttl=300)})
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 10)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            seen: list[Event] = []

            async def read() -> None:
                await read_until(client, seen, 40, slow=True)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await client.send("join", {"room": "1"})
                for n in range(11, 41):
                    await app.publish("room:1", "msg", n)
                    await trio.sleep(0.001)
            assert [e.data for e in seen if e.type == "msg"] == list(range(1, 41))
            [marker] = [e for e in seen if e.type == "wsroute.recovery"]
            assert marker.data["recovered"] is True


class Slowed(MemoryBroker):
    """A memory broker whose session method ``name`` first waits ``delay`` seconds
    when ``applies(*args)``: a slow network, on trio's clock."""

    def __init__(
        self, name: str, delay: float, applies: Callable[..., bool] = lambda *args: True
    ) -> None:
        super().__init__()
        self.name, self.delay, self.applies = name, delay, applies

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        async with super().connect(on_state=on_state) as session:
            original = getattr(session, self.name)

            async def slowed(*args: Any, **kwargs: Any) -> Any:
                if self.applies(*args):
                    await trio.sleep(self.delay)
                return await original(*args, **kwargs)

            setattr(session, self.name, slowed)
            yield session


async def test_a_recovery_cut_short_says_so(autojump_clock: trio.abc.Clock) -> None:
    app = make_app(broker=Slowed("read_history", delay=10), handler_timeout=1.0)
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 3)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"}, id=1)
            marker = await client.receive()
            assert isinstance(marker, Event) and marker.type == "wsroute.recovery"
            assert marker.data == {
                "recovered": False,
                "offset": None,
                "epoch": None,
                "missed": 0,
                "reason": "interrupted",
            }
            reply = await client.expect_reply(1)
            assert getattr(reply, "code", None) == "timeout"
            await app.publish("room:1", "msg", 4)  # live events flow on
            assert (await client.expect_event("msg")).data == 4


async def test_recovery_waits_for_a_subscription_another_connection_started(
    autojump_clock: trio.abc.Clock,
) -> None:
    def rooms(topics: list[str]) -> bool:
        return any(topic.startswith("room:") for topic in topics)

    app = make_app(broker=Slowed("subscribe_many", delay=3, applies=rooms))
    async with open_app(app):
        offset, epoch = await first_position(app)
        async with (
            open_client(app) as first,
            open_client(app, recover={"room:1": (offset, epoch)}) as second,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first.request, "join", {"room": "1"})  # subscribes, slowly
                await trio.sleep(1)
                nursery.start_soon(second.send, "join", {"room": "1"})
                await trio.sleep(1)
                # Neither in the history the second could have read at once, nor
                # delivered: the broker does not deliver the topic here yet.
                await app.publish("room:1", "msg", "during the subscribe")
            missed, marker = await events_until_recovery(second)
            assert [e.data for e in missed] == ["during the subscribe"]
            assert marker.data["recovered"] is True


async def test_a_recovery_that_live_events_keep_outrunning_gives_up_as_busy(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Each read of history is followed by more live events than are held for the
    # connection (outbox_size=2 holds one): every round must read again, until the
    # rounds run out and the client is told, with the last position it was sent.
    app = make_app(outbox_size=2, history={"room:*": History(size=1000, ttl=300)})
    published = iter(range(100, 1000))

    class Outrun(MemoryBroker):
        @asynccontextmanager
        async def connect(
            self, *, on_state: StateListener | None = None
        ) -> AsyncIterator[BrokerSession]:
            async with super().connect(on_state=on_state) as session:
                original = session.read_history

                async def read_history(*args: Any, **kwargs: Any) -> Any:
                    page = await original(*args, **kwargs)
                    if kwargs.get("since") is not None:  # recovery's reads, not app.history's
                        for _ in range(3):
                            await app.publish("room:1", "msg", next(published))
                        await trio.sleep(0.1)  # the pump delivers them: held, overflowing
                    return page

                session.read_history = read_history  # type: ignore[method-assign]
                yield session

    app.broker = Outrun()
    async with open_app(app):
        offset, epoch = await first_position(app)
        await publish(app, 1, 2)
        async with open_client(app, recover={"room:1": (offset, epoch)}) as client:
            await client.send("join", {"room": "1"})
            missed, marker = await events_until_recovery(client)
            assert marker.data["recovered"] is False and marker.data["reason"] == "busy"
            assert marker.data["epoch"] == epoch
            assert marker.data["offset"] == missed[-1].offset
            assert [e.offset for e in missed] == list(range(offset + 1, missed[-1].offset + 1))


def test_every_list_of_reasons_names_the_same_reasons() -> None:
    # The reasons recovery gives, and each place that lists them for others.
    reasons = {
        value
        for name, value in vars(recovery).items()
        if name.isupper() and isinstance(value, str) and name != "RECOVERY_TYPE"
    }
    assert "broker_lost" in reasons and "epoch_changed" in reasons
    root = Path(__file__).parent.parent
    dts = (root / "wsroute/static/wsroute.d.ts").read_text()
    union = re.search(r"export type RecoveryFailure =([^;]*);", dts)
    assert union is not None
    assert set(re.findall(r'"(\w+)"', union.group(1))) == reasons
    assert set(envelopes.RECOVERY["properties"]["reason"]["enum"]) == reasons
    history = (root / "docs/history.md").read_text()
    table = history[history.index("| `reason` |") : history.index("After `recovered: false`")]
    rows = set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)) - {"reason"}  # the header
    assert rows == reasons
    clients = (root / "docs/clients.md").read_text()
    assert all(f'`"{reason}"`' in clients and f"`{reason}`" in clients for reason in reasons)
