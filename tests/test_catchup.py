"""Catch-up (``wsroute._server.catchup``): connections that stayed open while their
process had lost the broker get what was published meanwhile on topics with
history, in order, then a ``wsroute.recovery`` event, then live events; a gap that
cannot be filled is said so.

First against a real redis-server, the process cut off from it by a TCP relay
(tests/redistools.py) that the test severs and holds down while another app
publishes, Redis' own command counts showing one read per topic for all its
members; then the finer cases
(several members, a second loss, members that leave or join meanwhile) on the
memory broker seen through a link the test cuts, on trio's clock.
tests/test_catchup_socket.py does the live gaps and the recovery floor over real
sockets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from wsroute import App, BrokerError, Connection, History, Position, SlowConsumerPolicy
from wsroute._protocol import encode_event
from wsroute._request import Request
from wsroute._server.hub import Hub
from wsroute._topics import TopicRules
from wsroute._wire.frames import Prepared
from wsroute.brokers import (
    Broker,
    BrokerMessage,
    BrokerSession,
    BrokerState,
    HistoryPage,
    MemoryBroker,
    RedisClusterBroker,
    StateListener,
)
from wsroute.testing import Event, TestClient, open_app, open_client

from .rediscluster import RedisCluster, redis_cluster
from .redisproc import RedisServer, own_redis_server, redis_server
from .redistools import TIMEOUT, Relay, calls, quick

__all__ = ["own_redis_server", "redis_cluster", "redis_server"]  # fixtures, imported to be found

HISTORY = {"room:*": History(size=1000, ttl=300)}
RECOVERY = "wsroute.recovery"


@attrs.frozen
class Join:
    room: str


def make_app(broker: Broker, **options: Any) -> App:
    options.setdefault("history", HISTORY)
    app = App(broker=broker, **options)

    @app.direct("join")
    async def join(req: Join, conn: Connection) -> None:
        await conn.subscribe(req.room)

    return app


class States:
    """An app's broker states, as its ``on_broker_state`` hook hears them."""

    def __init__(self, app: App) -> None:
        self.seen: list[BrokerState] = []
        self._changed = trio.Event()
        app.on_broker_state(self._hear)

    async def _hear(self, state: BrokerState) -> None:
        self.seen.append(state)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, state: BrokerState, count: int = 1) -> None:
        with trio.fail_after(TIMEOUT):
            while self.seen.count(state) < count:
                await self._changed.wait()


async def publish(app: App, numbers: Sequence[int], topic: str = "room:1") -> None:
    for n in numbers:
        await app.publish(topic, "msg", n)


async def receive_events(client: TestClient, count: int) -> list[Event]:
    """The next ``count`` events (replies skipped), within a bounded wait."""
    events: list[Event] = []
    with trio.fail_after(TIMEOUT):
        while len(events) < count:
            received = await client.receive()
            if isinstance(received, Event):
                events.append(received)
    return events


async def nothing_more(client: TestClient) -> None:
    with trio.move_on_after(0.2):
        received = await client.receive()
        raise AssertionError(f"unexpected {received}")


# -- against Redis, through a relay that the test cuts -------------------------------


@attrs.frozen
class Setup:
    app: App  # on Redis through the relay
    states: States
    relay: Relay
    publisher: App  # on Redis directly
    publisher_states: States


@asynccontextmanager
async def cut_off_app(redis: RedisServer) -> AsyncIterator[Setup]:
    """App A on Redis through a relay, app B on Redis directly, both running."""
    relay = Relay(redis.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        app, publisher = make_app(quick(relay.url)), make_app(quick(redis.url))
        setup = Setup(app, States(app), relay, publisher, States(publisher))
        async with open_app(app), open_app(publisher):
            yield setup
        nursery.cancel_scope.cancel()


async def test_what_was_published_while_redis_was_lost_comes_in_order_then_live(
    own_redis_server: RedisServer,
) -> None:
    async with cut_off_app(own_redis_server) as setup:
        app, states, relay, publisher = setup.app, setup.states, setup.relay, setup.publisher
        async with open_client(app) as client:
            await client.request("join", {"room": "room:1"})
            await publish(publisher, [0])
            [seen] = await receive_events(client, 1)
            assert seen.offset == 1 and seen.epoch
            relay.cut()
            await states.wait_for(BrokerState.DISCONNECTED)
            await publish(publisher, range(1, 51))
            relay.mend()
            await states.wait_for(BrokerState.CONNECTED)
            *missed, marker = await receive_events(client, 51)
            assert [(e.type, e.data) for e in missed] == [("msg", n) for n in range(1, 51)]
            assert [(e.offset, e.epoch) for e in missed] == [(n, seen.epoch) for n in range(2, 52)]
            assert (marker.type, marker.topic) == ("wsroute.recovery", "room:1")
            assert marker.data == {
                "recovered": True,
                "offset": 51,
                "epoch": seen.epoch,
                "missed": 50,
            }
            await publish(publisher, [51])
            [live] = await receive_events(client, 1)
            assert (live.data, live.offset) == (51, 52)
            await nothing_more(client)


@pytest.mark.parametrize("topics", [["room:1"], ["room:1", "room:2"]])
async def test_redis_reads_each_topics_history_once_for_all_its_members(
    topics: list[str], own_redis_server: RedisServer
) -> None:
    redis = own_redis_server
    async with (
        cut_off_app(redis) as setup,
        open_client(setup.app) as first,
        open_client(setup.app) as second,
        open_client(setup.app) as third,
    ):
        clients = [first, second, third]
        for client in clients:
            for topic in topics:
                await client.request("join", {"room": topic})
        for topic in topics:
            await publish(setup.publisher, [0], topic=topic)
        for client in clients:  # each member stands at offset 1 of each topic
            await receive_events(client, len(topics))
        setup.relay.cut()
        await setup.states.wait_for(BrokerState.DISCONNECTED)
        for topic in topics:
            await publish(setup.publisher, range(1, 6), topic=topic)
        async with redis.client() as plain:
            await plain.config_resetstat()
        setup.relay.mend()
        await setup.states.wait_for(BrokerState.CONNECTED)
        for client in clients:
            received = await receive_events(client, 6 * len(topics))
            for topic in topics:
                *missed, marker = [e for e in received if e.topic == topic]
                assert [(e.data, e.offset) for e in missed] == [(n, n + 1) for n in range(1, 6)]
                assert marker.type == RECOVERY
                assert (marker.data["recovered"], marker.data["missed"]) == (True, 5)
        # One script call per topic, whose one XRANGE read what every member missed.
        ran = await calls(redis, "evalsha", "eval", "xrange", "xrevrange", "xadd")
        assert ran == {
            "evalsha": len(topics),
            "eval": 0,
            "xrange": len(topics),
            "xrevrange": 0,
            "xadd": 0,
        }


async def test_redis_restarted_empty_during_the_loss_is_an_epoch_changed(
    own_redis_server: RedisServer,
) -> None:
    redis = own_redis_server
    async with cut_off_app(redis) as setup:
        app, states, relay, publisher = setup.app, setup.states, setup.relay, setup.publisher
        publisher_states = setup.publisher_states
        async with open_client(app) as client:
            await client.request("join", {"room": "room:1"})
            await publish(publisher, [0])
            [seen] = await receive_events(client, 1)
            relay.cut()
            await states.wait_for(BrokerState.DISCONNECTED)
            redis.kill()  # no persistence: it comes back empty
            await publisher_states.wait_for(BrokerState.DISCONNECTED)
            await redis.astart()
            await publisher_states.wait_for(BrokerState.CONNECTED)
            await publish(publisher, [1, 2, 3])
            relay.mend()
            await states.wait_for(BrokerState.CONNECTED)
            [marker] = await receive_events(client, 1)
            assert marker.type == "wsroute.recovery"
            epoch = marker.data["epoch"]
            assert isinstance(epoch, str) and epoch != seen.epoch
            assert marker.data == {
                "recovered": False,
                "offset": 3,
                "epoch": epoch,
                "missed": 0,
                "reason": "epoch_changed",
            }
            await publish(publisher, [4])
            [live] = await receive_events(client, 1)
            assert (live.data, live.offset, live.epoch) == (4, 4, epoch)


async def test_a_member_that_had_received_nothing_is_told_broker_lost(
    own_redis_server: RedisServer,
) -> None:
    async with cut_off_app(own_redis_server) as setup:
        app, states, relay, publisher = setup.app, setup.states, setup.relay, setup.publisher
        async with open_client(app) as client:
            await client.request("join", {"room": "room:2"})
            relay.cut()
            await states.wait_for(BrokerState.DISCONNECTED)
            await publish(publisher, range(5), topic="room:2")
            relay.mend()
            await states.wait_for(BrokerState.CONNECTED)
            [marker] = await receive_events(client, 1)
            assert marker.type == "wsroute.recovery" and marker.topic == "room:2"
            epoch = marker.data["epoch"]
            assert marker.data == {
                "recovered": False,
                "offset": 5,
                "epoch": epoch,
                "missed": 0,
                "reason": "broker_lost",
            }
            await publish(publisher, [5], topic="room:2")
            [live] = await receive_events(client, 1)
            assert (live.data, live.offset, live.epoch) == (5, 6, epoch)


# -- on the memory broker, through a link the test cuts ------------------------------


class Link:
    """What stands between an app and the memory broker: ``cut`` loses it (reads
    fail, deliveries are lost), ``mend`` restores it."""

    def __init__(self) -> None:
        self.down = False
        self.reads: list[tuple[str, int | None]] = []
        self.on_state: StateListener | None = None
        #: Messages to lose silently, the broker not lost (a backlog that overflowed).
        self.losing = 0
        #: Whether each message comes twice (a copy that arrives late).
        self.twice = False
        #: Set, reads of history wait for it.
        self.reads_wait: trio.Event | None = None
        #: Whether messages are held back (still on their way), and those held.
        self.delaying = False
        self.delayed: list[BrokerMessage] = []

    def cut(self) -> None:
        self.down = True
        assert self.on_state is not None
        self.on_state(BrokerState.DISCONNECTED)

    async def mend(self) -> None:
        await trio.testing.wait_all_tasks_blocked()  # what was sent meanwhile is lost
        self.down = False
        assert self.on_state is not None
        self.on_state(BrokerState.CONNECTED)

    def check(self) -> None:
        if self.down:
            raise BrokerError("the link is cut")


class LinkedSession(BrokerSession):
    """A memory broker session behind a ``Link``."""

    keeps_history = True

    async def publish(self, topic: str, data: bytes) -> None:
        self.link.check()
        await self.inner.publish(topic, data)

    async def publish_kept(self, topic: str, data: bytes, history: History) -> Position:
        self.link.check()
        return await self.inner.publish_kept(topic, data, history)

    async def read_history(
        self, topic: str, history: History, *, since: int | None = None, limit: int | None = None
    ) -> HistoryPage:
        await trio.lowlevel.checkpoint()
        if self.link.reads_wait is not None:
            await self.link.reads_wait.wait()
        self.link.check()
        self.link.reads.append((topic, since))
        return await self.inner.read_history(topic, history, since=since, limit=limit)

    async def subscribe(self, topic: str) -> None:
        await self.inner.subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        await self.inner.unsubscribe(topic)

    def __init__(self, inner: BrokerSession, link: Link) -> None:
        self.inner, self.link = inner, link
        self._again: BrokerMessage | None = None

    async def __anext__(self) -> BrokerMessage:
        if self._again is not None:
            message, self._again = self._again, None
            return message
        for _ in range(10_000):
            if self.link.delayed and not self.link.delaying:
                return self.link.delayed.pop(0)
            message = await self.inner.__anext__()
            if self.link.delaying or self.link.delayed:  # in order, after those held
                self.link.delayed.append(message)
                continue
            if self.link.losing and not self.link.down:
                self.link.losing -= 1
                continue
            if not self.link.down:
                if self.link.twice:
                    self._again = message
                return message
        raise AssertionError("the link lost too much")


class Linked(Broker):
    def __init__(self, inner: MemoryBroker, link: Link) -> None:
        self.inner, self.link = inner, link

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        self.link.on_state = on_state
        async with self.inner.connect() as session:
            yield LinkedSession(session, self.link)


@asynccontextmanager
async def linked_apps(**options: Any) -> AsyncIterator[tuple[App, Link, App]]:
    """App A behind a link, and app B publishing on the same memory broker."""
    memory, link = MemoryBroker(), Link()
    cut_off, publisher = make_app(Linked(memory, link), **options), make_app(memory)
    async with open_app(cut_off), open_app(publisher):
        yield cut_off, link, publisher


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_one_read_serves_every_member_of_a_topic(autojump_clock: trio.abc.Clock) -> None:
    async with (
        linked_apps() as (app, link, publisher),
        open_client(app) as first,
        open_client(app) as second,
        open_client(app) as third,
    ):
        clients = [first, second, third]
        for client in clients:
            await client.request("join", {"room": "room:1"})
        await publish(publisher, [0])
        for client in clients:
            await receive_events(client, 1)
        await settle()
        link.cut()
        await publish(publisher, range(1, 6))
        await link.mend()
        for client in clients:
            *missed, marker = await receive_events(client, 6)
            assert [e.data for e in missed] == [1, 2, 3, 4, 5]
            assert marker.data["recovered"] is True and marker.data["offset"] == 6
        assert link.reads == [("room:1", 1)]


async def test_the_memory_broker_is_never_lost() -> None:
    app = make_app(MemoryBroker())
    async with open_app(app), open_client(app) as client:
        await client.request("join", {"room": "room:1"})
        await publish(app, range(3))
        assert [e.type for e in await receive_events(client, 3)] == ["msg"] * 3
        await nothing_more(client)


@pytest.mark.parametrize("topic", ["plain", "room:1"])
async def test_nothing_happens_to_topics_without_history_or_without_loss(
    topic: str, autojump_clock: trio.abc.Clock
) -> None:
    async with linked_apps() as (app, link, publisher), open_client(app) as client:
        await client.request("join", {"room": topic})
        await publish(publisher, [0], topic=topic)
        await receive_events(client, 1)
        await settle()
        if topic == "plain":  # its gap cannot be filled: apps hear broker_lost
            link.cut()
            await publish(publisher, [1], topic=topic)
            await link.mend()
        await publish(publisher, [2], topic=topic)
        [live] = await receive_events(client, 1)
        assert live.data == 2
        await nothing_more(client)


# -- the hub's catch-up, step by step -------------------------------------------------

ROOM = HISTORY["room:*"]


def connection(hub: Hub, outbox_size: int = 8, **options: Any) -> Connection:
    """A connection without a writer: what is sent to it stays queued (``take``)."""
    return Connection(
        Request.build("/"),
        hub=hub,
        unstructure=lambda value: value,
        outbox_size=outbox_size,
        policy=SlowConsumerPolicy.CLOSE,
        **options,
    )


async def take(conn: Connection) -> list[tuple[str, Any]]:
    """What is queued on ``conn`` as ``(type, data)``, emptying its outbox."""
    await settle()
    if not len(conn._outbox):
        return []
    frames = await conn._outbox.get_batch()
    assert frames is not None
    decoded = [json.loads(frame.payload) for frame in frames if isinstance(frame, Prepared)]
    return [(event["type"], event["data"]) for event in decoded]


async def drain(conn: Connection) -> list[tuple[str, Any]]:
    """Everything sent to ``conn`` until nothing more comes."""
    received: list[tuple[str, Any]] = []
    for _ in range(1000):
        batch = await take(conn)
        if not batch:
            return received
        received += batch
    raise AssertionError("it never ends")


@asynccontextmanager
async def hub_behind_link(hold_limit: int = 4) -> AsyncIterator[tuple[Hub, Link, BrokerSession]]:
    """A hub whose broker session is behind a link, pumping, and another session on
    the same memory broker to publish with."""
    memory, link = MemoryBroker(), Link()
    async with memory.connect() as inner, memory.connect() as other, trio.open_nursery() as nursery:
        hub = Hub(LinkedSession(inner, link), TopicRules(HISTORY), hold_limit=hold_limit)

        def on_state(state: BrokerState) -> None:
            if state is BrokerState.CONNECTED:
                hub.catchup.restored(nursery)
            else:
                hub.catchup.lost()

        link.on_state = on_state
        await nursery.start(hub.pump)
        yield hub, link, other
        nursery.cancel_scope.cancel()


async def kept(session: BrokerSession, numbers: Sequence[int], topic: str = "room:1") -> None:
    for n in numbers:
        await session.publish_kept(topic, encode_event("msg", topic, n), ROOM)


def marker(recovered: bool, offset: int | None, missed: int, reason: str = "") -> dict[str, Any]:
    """The data of a ``wsroute.recovery`` event, without its epoch."""
    data: dict[str, Any] = {"recovered": recovered, "offset": offset, "missed": missed}
    if reason:
        data["reason"] = reason
    return data


def without_epoch(received: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [
        (kind, {k: v for k, v in data.items() if k != "epoch"} if kind == RECOVERY else data)
        for kind, data in received
    ]


@pytest.mark.parametrize("waiting", [True, False])
async def test_a_second_loss_during_the_replay_resumes_from_what_was_sent(
    waiting: bool, autojump_clock: trio.abc.Clock
) -> None:
    async with hub_behind_link() as (hub, link, other):
        conn = connection(hub, outbox_size=8)  # the replay fills at most 4
        await conn.subscribe("room:1")
        await kept(other, [0])
        assert await take(conn) == [("msg", 0)]
        link.cut()
        await kept(other, range(1, 21))
        await link.mend()
        assert await take(conn) == [("msg", n) for n in range(1, 5)]  # then it waits
        if waiting:
            await settle()  # it sends 4 more and waits again
        # Else it was woken to send more: cancelled, it still sends until it waits.
        link.cut()  # cancels the replay
        await kept(other, range(21, 26))
        await link.mend()
        *rest, (kind, data) = without_epoch(await drain(conn))
        assert rest == [("msg", n) for n in range(5, 26)]
        assert kind == RECOVERY and data["recovered"] is True and data["offset"] == 26
        if waiting:
            assert data["missed"] == 17  # what the second replay sent
        assert hub.catchup.gaps == {} and hub._held == {}


@pytest.mark.parametrize("ends", [False, True])
async def test_a_member_that_leaves_during_the_replay_is_skipped(
    ends: bool, autojump_clock: trio.abc.Clock
) -> None:
    async with hub_behind_link() as (hub, link, other):
        slow, quick_one = connection(hub, outbox_size=4), connection(hub)
        for conn in (slow, quick_one):
            await conn.subscribe("room:1")
        await kept(other, [0])
        for conn in (slow, quick_one):
            assert await take(conn) == [("msg", 0)]
        link.cut()
        await kept(other, range(1, 11))
        await link.mend()
        await settle()
        assert len(slow._outbox) == 2  # its part waits for room
        if ends:  # its connection ends
            await hub.leave(slow)
        else:
            await slow.unsubscribe("room:1")
        assert without_epoch(await drain(quick_one)) == [
            *[("msg", n) for n in range(1, 11)],
            (RECOVERY, marker(True, 11, 10)),
        ]
        await kept(other, [11])
        assert await take(quick_one) == [("msg", 11)]
        assert await drain(slow) == [("msg", 1), ("msg", 2)]
        assert hub.catchup.gaps == {} and hub._held == {}


async def test_who_joins_during_the_loss_catches_up_too(autojump_clock: trio.abc.Clock) -> None:
    async with hub_behind_link() as (hub, link, other):
        first, later = connection(hub), connection(hub)
        await first.subscribe("room:1")
        await kept(other, [0])
        await settle()
        link.cut()
        await kept(other, [1])
        await later.subscribe("room:1")  # it hosts the topic: it starts where the topic did
        await later.subscribe("room:2")  # new here: where it stands is unknown
        await kept(other, [2])
        await kept(other, [0, 1], topic="room:2")
        await link.mend()
        received = without_epoch(await drain(later))
        unknown = (RECOVERY, marker(False, 2, 0, "broker_lost"))  # room:2's
        assert unknown in received
        received.remove(unknown)
        assert received == [("msg", 1), ("msg", 2), (RECOVERY, marker(True, 3, 2))]


async def test_a_recovery_cut_off_by_the_loss_resumes_when_the_broker_is_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with hub_behind_link() as (hub, link, other):
        await kept(other, range(3))
        epoch = (await other.read_history("room:1", ROOM, limit=0)).position.epoch
        link.cut()
        conn = connection(hub, recover={"room:1": Position(1, epoch)})
        await conn.subscribe("room:1")  # its own recovery cannot read history
        await kept(other, [3])
        await link.mend()
        assert without_epoch(await drain(conn)) == [
            (RECOVERY, {"recovered": False, "offset": None, "missed": 0, "reason": "unavailable"}),
            ("msg", 1),
            ("msg", 2),
            ("msg", 3),
            (RECOVERY, marker(True, 4, 3)),
        ]


@pytest.mark.parametrize("read_during_loss", [False, True])
async def test_a_member_recovering_on_its_own_when_the_loss_begins_misses_nothing(
    read_during_loss: bool, autojump_clock: trio.abc.Clock
) -> None:
    async with hub_behind_link() as (hub, link, other):
        await kept(other, range(11))
        epoch = (await other.read_history("room:1", ROOM, limit=0)).position.epoch
        conn = connection(hub, outbox_size=4, recover={"room:1": Position(1, epoch)})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.subscribe, "room:1")
            received = await take(conn)  # its recovery sent 2 and waits for room
            assert received == [("msg", 1), ("msg", 2)]
            link.cut()
            await kept(other, range(11, 14))
            if read_during_loss:  # it reads history again, and cannot
                received += await drain(conn)
            await link.mend()
            received += await drain(conn)
        messages = [data for kind, data in received if kind == "msg"]
        assert messages == list(range(1, 14))
        markers = without_epoch([event for event in received if event[0] == RECOVERY])
        if read_during_loss:  # told it could not, then caught up once the broker was back
            assert markers == [
                (
                    RECOVERY,
                    {"recovered": False, "offset": None, "missed": 10, "reason": "unavailable"},
                ),
                (RECOVERY, marker(True, 14, 3)),
            ]
        else:
            assert markers == [(RECOVERY, marker(True, 14, 13))]
        assert hub.catchup.gaps == {}
        if not read_during_loss:
            # It recovered on its own and no live event came since: copies of what it
            # read may still come, so its floor stays until the first event past it.
            [floor] = hub._held["room:1"].values()
            assert floor.floor == Position(14, epoch)
        await kept(other, [14])
        assert await drain(conn) == [("msg", 14)]
        assert hub._held == {}


# -- live events that never reached the process ---------------------------------------


async def test_live_events_that_never_arrived_are_read_from_history(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with hub_behind_link() as (hub, link, other):
        conn, bystander = connection(hub), connection(hub)
        await conn.subscribe("room:1")
        await bystander.subscribe("room:2")
        await kept(other, [0])
        await kept(other, [0], topic="room:2")
        assert await drain(conn) == [("msg", 0)]
        link.losing = 3  # offsets 2 to 4, the broker not lost
        await kept(other, range(1, 5))
        await kept(other, [1], topic="room:2")
        received = await drain(conn)
        await kept(other, [5])
        received += await drain(conn)
        assert without_epoch(received) == [
            ("msg", 1),
            ("msg", 2),
            ("msg", 3),
            ("msg", 4),  # from history too: kept before it was delivered
            (RECOVERY, marker(True, 5, 4)),
            ("msg", 5),
        ]
        assert link.reads == [("room:1", 1)]  # one read, after the last one delivered
        assert await drain(bystander) == [("msg", 0), ("msg", 1)]  # another topic: untouched
        assert hub.catchup.gaps == {} and hub._held == {}


async def test_a_gap_while_a_replay_is_under_way_is_filled_after_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with hub_behind_link() as (hub, link, other):
        first, second = connection(hub, outbox_size=64), connection(hub, outbox_size=64)
        await first.subscribe("room:1")
        await second.subscribe("room:2")
        for topic in ("room:1", "room:2"):
            await kept(other, [0], topic=topic)
        await drain(first), await drain(second)
        link.reads_wait = trio.Event()
        link.losing = 1
        await kept(other, [1, 2])
        await settle()  # room:1's replay waits to read
        assert hub.catchup.gaps.keys() == {"room:1"}
        link.losing = 1
        await kept(other, [1, 2], topic="room:2")  # its gap, found meanwhile
        await settle()
        assert hub.catchup.gaps.keys() == {"room:1", "room:2"}
        link.reads_wait.set()
        for conn in (first, second):
            received = without_epoch(await drain(conn))
            assert received == [("msg", 1), ("msg", 2), (RECOVERY, marker(True, 3, 2))]
        assert sorted(link.reads) == [("room:1", 1), ("room:2", 1)]


async def test_a_late_copy_of_an_event_is_not_delivered_twice(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with hub_behind_link() as (hub, link, other):
        conn = connection(hub, outbox_size=64)
        await conn.subscribe("room:1")
        await kept(other, [0])
        link.twice = True
        await kept(other, range(1, 4))
        assert await drain(conn) == [("msg", n) for n in range(4)]
        assert link.reads == []


async def two_members(
    hub: Hub, link: Link, other: BrokerSession, *, delaying: bool
) -> tuple[Connection, Connection, list[tuple[str, Any]]]:
    """One member that got offsets 1 to 3 live; offsets 4 to 6 published (held back
    on their way if ``delaying``); then another that comes back from offset 2 and
    recovers: both members, and what the second got."""
    staying = connection(hub, outbox_size=64)
    await staying.subscribe("room:1")
    await kept(other, range(3))
    assert await drain(staying) == [("msg", n) for n in range(3)]
    position = Position(2, hub._last["room:1"].epoch)
    link.delaying = delaying
    if delaying:
        await kept(other, range(3, 6))
    back = connection(hub, outbox_size=64, recover={"room:1": position})
    await back.subscribe("room:1")
    return staying, back, await drain(back)


async def test_a_member_recovering_on_its_own_finds_the_gap_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with hub_behind_link() as (hub, link, other):
        staying, back, received = await two_members(hub, link, other, delaying=False)
        link.losing = 1
        await kept(other, range(3, 6))
        for conn in (staying, back):
            messages = [data for kind, data in await drain(conn) if kind == "msg"]
            if conn is back:
                messages = [data for kind, data in received if kind == "msg"] + messages
            assert messages == ([2] if conn is back else []) + [3, 4, 5]


async def test_live_copies_of_what_a_recovery_read_are_not_delivered_twice(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with hub_behind_link() as (hub, link, other):
        # Offsets 4 to 6 still on their way to this process when it reads them.
        staying, back, received = await two_members(hub, link, other, delaying=True)
        link.delaying = False
        await kept(other, [6])  # the late copies come, then offset 7
        assert await drain(staying) == [("msg", n) for n in range(3, 7)]
        assert without_epoch(received + await drain(back)) == [
            *[("msg", n) for n in range(2, 6)],
            (RECOVERY, marker(True, 6, 4)),
            ("msg", 6),
        ]
        assert hub._held == {}  # the floor is gone with the first event past it


async def test_a_member_past_the_live_events_catches_up_from_where_it_stands(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with hub_behind_link() as (hub, link, other):
        staying, back, received = await two_members(hub, link, other, delaying=True)
        link.delayed.pop(0)  # offset 4 is lost on its way: a gap for those at 3
        link.delaying = False
        await kept(other, [6])
        received += await drain(back)
        messages = [data for kind, data in await drain(staying) if kind == "msg"]
        assert messages == [3, 4, 5, 6]
        assert [data for kind, data in received if kind == "msg"] == [2, 3, 4, 5, 6]
        assert sorted(link.reads) == [("room:1", 2), ("room:1", 3)]


# -- against a Redis Cluster: a backlog that overflows ---------------------------------


async def test_events_dropped_by_an_overflowing_backlog_are_read_from_history(
    redis_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # One reader per shard feeds the session's backlog; two places are too few for
    # what three shards send at once, so some events are dropped, never silently.
    app = make_app(RedisClusterBroker(redis_cluster.url(), backlog=2, prefix="gaps:"))
    publisher = make_app(RedisClusterBroker(redis_cluster.url(), prefix="gaps:"))
    rooms, count = [f"room:{n}" for n in range(12)], 100  # rooms on every shard
    async with open_app(app), open_app(publisher), open_client(app) as client:
        for room in rooms:
            await client.request("join", {"room": room})
        for room in rooms:
            await publish(publisher, [-1], topic=room)
        first = {event.topic: event.offset for event in await receive_events(client, len(rooms))}
        async with trio.open_nursery() as nursery:
            for room in rooms:
                nursery.start_soon(publish, publisher, range(count), room)
        events: list[Event] = []
        with trio.fail_after(TIMEOUT):
            while sum(event.type == "msg" for event in events) < len(rooms) * count:
                events += await receive_events(client, 1)
    assert "the consumer fell 2 messages behind" in caplog.text  # it did drop
    for room in rooms:  # every event once, in order
        mine = [event for event in events if event.topic == room and event.type == "msg"]
        assert [event.data for event in mine] == list(range(count))
        start = first[room]
        assert start is not None
        assert [event.offset for event in mine] == list(range(start + 1, start + 1 + count))
    markers = [event.data for event in events if event.type == RECOVERY]
    assert markers and all(marker["recovered"] is True for marker in markers)
