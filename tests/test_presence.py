"""Presence (``wsroute._presence``, ``wsroute._server.presence``): who is on a topic,
cluster-wide; join and leave events once each; the entries of a process that died
swept within the ttl; the protocol's presence requests.

Two apps on one MemoryBroker are two processes; tests/test_redis_presence.py does the
same on a real Redis and with real processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import wsroute.client
from wsroute import (
    App,
    BrokerError,
    Connection,
    Presence,
    PresenceEntry,
    PresenceStats,
    PresenceUnsupported,
    Request,
)
from wsroute._protocol import encode_event
from wsroute.brokers import BrokerSession, MemoryBroker, StateListener
from wsroute.testing import ErrorReply, Event, RequestError, open_app, open_client

from .presencedeath import leave_outlives_the_remover, leave_outlives_the_sweeper

TTL = 30.0


def make_app(broker: MemoryBroker, **options: Any) -> App:
    options.setdefault("presence", {"room:*": Presence(events=True), "quiet:*": Presence()})
    app = App(broker=broker, presence_ttl=TTL, **options)

    @app.accept
    async def accept(request: Request) -> str | None:
        return request.query.get("user")

    @app.on_connect
    async def hello(conn: Connection) -> None:
        conn.presence_meta = {"device": conn.request.query.get("device", "web")}

    @app.direct("join")
    async def join(topic: str, conn: Connection) -> None:
        await conn.subscribe(topic)

    @app.direct("leave")
    async def leave(topic: str, conn: Connection) -> None:
        await conn.unsubscribe(topic)

    return app


def entry(client_id: str, user: str | None, device: str = "web") -> dict[str, Any]:
    return {"connection": client_id, "user": user, "meta": {"device": device}}


async def test_entries_are_seen_from_every_process_and_go_when_connections_leave() -> None:
    broker = MemoryBroker()
    first, second = make_app(broker), make_app(broker)
    async with open_app(first), open_app(second):
        async with (
            open_client(first, query={"user": "ann"}) as ann,
            open_client(second, query={"user": "bob", "device": "phone"}) as bob,
        ):
            await ann.request("join", "room:1")
            await bob.request("join", "room:1")
            [ann_id] = [c.id for c in first.connections]
            [bob_id] = [c.id for c in second.connections]
            expected = sorted(
                [
                    PresenceEntry(ann_id, "ann", {"device": "web"}),
                    PresenceEntry(bob_id, "bob", {"device": "phone"}),
                ],
                key=lambda e: e.connection,
            )
            for app in (first, second):
                listed = await app.presence("room:1")
                assert sorted(listed, key=lambda e: e.connection) == expected
            await bob.request("leave", "room:1")
            assert await first.presence("room:1") == [
                PresenceEntry(ann_id, "ann", {"device": "web"})
            ]
        assert await first.presence("room:1") == []


async def test_join_and_leave_events_go_to_subscribers_once_each() -> None:
    broker = MemoryBroker()
    first, second = make_app(broker), make_app(broker)
    async with open_app(first), open_app(second), open_client(first, query={"user": "ann"}) as ann:
        await ann.request("join", "room:1")
        [ann_id] = [c.id for c in first.connections]
        assert await ann.expect_event("wsroute.join") == Event(
            "wsroute.join", "room:1", entry(ann_id, "ann")
        )
        async with open_client(second, query={"user": "bob"}) as bob:
            await bob.request("join", "room:1")
            [bob_id] = [c.id for c in second.connections]
            joined = await ann.expect_event("wsroute.join")
            assert joined.data == entry(bob_id, "bob")
        left = await ann.expect_event("wsroute.leave")
        assert left == Event("wsroute.leave", "room:1", entry(bob_id, "bob"))
        await ann.expect_no_message()  # once


async def test_topics_without_events_send_none() -> None:
    app = make_app(MemoryBroker())
    async with open_app(app), open_client(app) as client:
        await client.request("join", "quiet:1")
        await client.expect_no_message()
        assert len(await app.presence("quiet:1")) == 1


async def test_stats_count_a_user_with_several_connections_once() -> None:
    app = make_app(MemoryBroker())
    async with (
        open_app(app),
        open_client(app, query={"user": "ann"}) as one,
        open_client(app, query={"user": "ann", "device": "phone"}) as two,
        open_client(app) as anonymous,
    ):
        for client in (one, two, anonymous):
            await client.request("join", "quiet:1")
        assert await app.presence_stats("quiet:1") == PresenceStats(connections=3, users=1)
        assert await one.request("wsroute.presence_stats", {"topic": "quiet:1"}) == {
            "connections": 3,
            "users": 1,
        }
        listed = await two.request("wsroute.presence", {"topic": "quiet:1"})
        assert sorted(e["meta"]["device"] for e in listed) == ["phone", "web", "web"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"topic": "room:2"}, "not_subscribed"),
        ({"topic": "other"}, "no_presence"),
        ({"topic": 3}, "invalid_data"),
        ({"topic": "room:1", "more": 1}, "invalid_data"),
        ("room:1", "invalid_data"),
        (None, "invalid_data"),
    ],
)
async def test_presence_requests_answer_errors_with_codes(data: Any, code: str) -> None:
    app = make_app(MemoryBroker())
    async with open_app(app), open_client(app) as client:
        await client.request("join", "room:1")
        for type in ("wsroute.presence", "wsroute.presence_stats"):
            with pytest.raises(RequestError) as failed:
                await client.request(type, data)
            assert failed.value.code == code


async def test_an_app_without_presence_answers_its_requests_no_presence() -> None:
    app = App()
    async with open_app(app), open_client(app) as client:
        await client.send("wsroute.presence", {"topic": "all"}, id=1)
        answer = await client.expect_reply(1)
        assert isinstance(answer, ErrorReply) and answer.code == "no_presence"
        with pytest.raises(PresenceUnsupported, match="has no presence"):
            await app.presence("all")


async def test_the_entries_of_a_process_that_died_go_within_the_ttl(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = MemoryBroker()
    app = make_app(broker)
    async with open_app(app), broker.connect() as dead, open_client(app) as watcher:
        await watcher.request("join", "room:1")
        await watcher.expect_event("wsroute.join")
        # A process that beat once and joined two connections, then died (kill -9);
        # with their entries, the leave events its keeper gives the broker.
        await dead.presence_heartbeat("dead-node", TTL)
        for member in ("c1", "c2"):
            leave = encode_event("wsroute.leave", "room:1", {"connection": member})
            entry = b'{"connection":"%s"}' % member.encode()
            await dead.presence_add("room:1", member, "dead-node", entry, leave=leave)
        assert len(await app.presence("room:1")) == 3
        start = trio.current_time()
        left = [await watcher.expect_event("wsroute.leave", timeout=2 * TTL) for _ in range(2)]
        assert trio.current_time() - start <= TTL + TTL / 3
        assert sorted(e.data["connection"] for e in left) == ["c1", "c2"]
        assert len(await app.presence("room:1")) == 1
        await watcher.expect_no_message(timeout=2 * TTL)  # each leave once


class SlowBeat(MemoryBroker):
    """A memory broker where one node's heartbeat stalls once for ``stall`` seconds:
    its process could not reach the broker in time."""

    def __init__(self, stall: float) -> None:
        super().__init__()
        self.stall = stall
        self.beats = 0

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        async with super().connect(on_state=on_state) as session:
            original = session.presence_heartbeat

            async def presence_heartbeat(node: str, ttl: float) -> bool:
                self.beats += 1
                if self.beats == 2:
                    await trio.sleep(self.stall)
                return await original(node, ttl)

            session.presence_heartbeat = presence_heartbeat  # type: ignore[method-assign]
            yield session


async def test_a_process_swept_while_away_adds_its_entries_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = SlowBeat(stall=2 * TTL)
    stalled = make_app(broker)
    async with open_app(stalled), open_client(stalled) as client:
        await client.request("join", "room:1")
        await client.expect_event("wsroute.join")
        async with broker.connect() as sweeper:
            await trio.sleep(TTL * 1.1)  # the stalled beat has not come back
            assert [t for t, _ in await sweeper.presence_sweep()] == ["room:1"]
        await client.expect_event("wsroute.join", timeout=2 * TTL)  # announced again
        assert len(await stalled.presence("room:1")) == 1


async def test_presence_meta_must_be_json() -> None:
    app = make_app(MemoryBroker())

    @app.direct("odd")
    async def odd(conn: Connection) -> None:
        conn.presence_meta = {"when": object()}
        await conn.subscribe("room:1")

    async with open_app(app), open_client(app) as client:
        with pytest.raises(RequestError, match="internal_error"):
            await client.request("odd")
        assert await app.presence("room:1") == []
        assert "room:1" not in app.connections[0].topics


class NoPresence(MemoryBroker):
    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        async with super().connect(on_state=on_state) as session:
            session.keeps_presence = False
            yield session


async def test_an_app_with_presence_refuses_a_broker_without() -> None:
    app = make_app(NoPresence())
    with pytest.raises(PresenceUnsupported, match="keeps no presence"):
        async with open_app(app):
            pass


@pytest.mark.parametrize(
    ("presence", "message"),
    [
        ("room:*", "must list topic patterns"),
        ({"room:*": True}, "maps 'room:\\*' to True, not a Presence"),
        ([""], "a topic pattern is a non-empty string"),
    ],
)
def test_the_presence_option_is_checked(presence: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        App(presence=presence)


def test_a_list_of_patterns_means_presence_without_events() -> None:
    assert App(presence=["room:*"]).config.presence.get("room:1") == Presence(events=False)


async def test_the_python_client_asks_and_hears_over_a_real_socket(
    serve: Callable[[App], Awaitable[int]],
) -> None:
    app = make_app(MemoryBroker())
    url = f"ws://127.0.0.1:{await serve(app)}/?user=ann"
    async with wsroute.client.connect(url, reconnect=None) as client:
        joins = client.events(type="wsroute.join")
        await client.request("join", "room:1")
        [conn] = app.connections
        assert await client.request("wsroute.presence", {"topic": "room:1"}) == [
            entry(conn.id, "ann")
        ]
        assert await client.request("wsroute.presence_stats", {"topic": "room:1"}) == {
            "connections": 1,
            "users": 1,
        }
        with trio.fail_after(5):
            joined = await joins.__anext__()
        assert (joined.topic, joined.data) == ("room:1", entry(conn.id, "ann"))
        with pytest.raises(wsroute.client.ClientHandlerError) as failed:
            await client.request("wsroute.presence", {"topic": "room:2"})
        assert failed.value.code == "not_subscribed"


class FailingRemove(MemoryBroker):
    """A memory broker that cannot take the first presence removal."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        async with super().connect(on_state=on_state) as session:
            original = session.presence_remove

            async def presence_remove(topic: str, member: str, node: str) -> bool:
                if not self.failed:
                    self.failed = True
                    raise BrokerError("the broker is away")
                return await original(topic, member, node)

            session.presence_remove = presence_remove  # type: ignore[method-assign]
            yield session


async def test_a_removal_the_broker_did_not_take_is_tried_again_on_the_next_beat(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = make_app(FailingRemove())
    async with open_app(app), open_client(app) as watcher:
        await watcher.request("join", "room:1")
        await watcher.expect_event("wsroute.join")
        async with open_client(app) as leaving:
            await leaving.request("join", "room:1")
            await watcher.expect_event("wsroute.join")
        assert len(await app.presence("room:1")) == 2  # its removal failed
        left = await watcher.expect_event("wsroute.leave", timeout=TTL)  # the next beat
        assert len(await app.presence("room:1")) == 1
        assert left.data["connection"] not in {c.id for c in app.connections}


async def test_a_leave_reaches_subscribers_when_the_remover_dies_right_after(
    autojump_clock: trio.abc.Clock,
) -> None:
    await leave_outlives_the_remover(MemoryBroker())


async def test_a_leave_reaches_subscribers_when_the_sweeper_dies_right_after(
    autojump_clock: trio.abc.Clock,
) -> None:
    await leave_outlives_the_sweeper(MemoryBroker(), TTL)


class OldBroker(MemoryBroker):
    """A broker written before ``publishes_presence_events``: ``presence_add`` takes
    no events, and the runtime publishes them."""

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        async with super().connect(on_state=on_state) as session:
            original = session.presence_add

            async def presence_add(topic: str, member: str, node: str, entry: bytes) -> None:
                await original(topic, member, node, entry)

            session.presence_add = presence_add  # type: ignore[method-assign]
            session.publishes_presence_events = False  # type: ignore[misc]
            yield session


async def test_a_broker_that_publishes_no_events_has_them_published_by_the_app(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = OldBroker()
    first, second = make_app(broker), make_app(broker)
    async with open_app(first), open_app(second), open_client(first) as watcher:
        await watcher.request("join", "room:1")
        await watcher.expect_event("wsroute.join")
        async with open_client(second) as leaving:
            await leaving.request("join", "room:1")
            assert (await watcher.expect_event("wsroute.join")).data["connection"]
        assert await watcher.expect_event("wsroute.leave")
        # A process that died: its entry swept, its leave published by the sweeper.
        async with broker.connect() as dead:
            await dead.presence_heartbeat("dead-node", TTL)
            await dead.presence_add("room:1", "c9", "dead-node", b'{"connection":"c9"}')
        left = await watcher.expect_event("wsroute.leave", timeout=2 * TTL)
        assert left.data == {"connection": "c9"}
        await watcher.expect_no_message(timeout=TTL)  # once
