"""The Python client resumes (``wsroute.client``, docs/clients.md): it presents the last
position it saw per topic when it reconnects, and the topics its replayed requests
join again come back with what was missed, in order, then a ``wsroute.recovery``
event. Against a real app with history on the memory broker, over real sockets on
127.0.0.1; the app holds connections and replies where a test must act in between,
so no test depends on how long anything takes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import trio

from wsroute import App, Connection, History, Position, Request, bearer_auth
from wsroute._protocol import MAX_RECOVER_TOPICS
from wsroute.client import Backoff, Client, Event, State, StateChange, connect

TIMEOUT = 10.0
FAST = Backoff(initial=0.01, maximum=0.05)

Serve = Callable[[App], Awaitable[int]]


class Room:
    """An app with history on ``room:*`` and levers for the tests.

    Alice's token is ``alice-token`` (``Authorization`` or the ``token`` parameter).
    ``join`` subscribes to ``room:<name>`` and answers; ``kick`` closes the connection
    with a code. While ``admitting`` is not set, new connections wait in the handshake;
    while ``answering`` is not set, ``join`` waits after subscribing (so what the
    subscription sends is out before its reply). ``queries`` holds the query of each
    connection, ``query_items`` its parameters as sent.
    """

    def __init__(self, size: int = 100) -> None:
        self.app = App(history={"room:*": History(size=size, ttl=300)})
        self.admitting = trio.Event()
        self.admitting.set()
        self.answering = trio.Event()
        self.answering.set()
        self.queries: list[dict[str, str]] = []
        self.query_items: list[tuple[tuple[str, str], ...]] = []
        check = bearer_auth({"alice-token": "alice"}.get)

        @self.app.accept
        async def accept(request: Request) -> Any:
            await self.admitting.wait()
            return await check(request)

        @self.app.on_connect
        async def on_connect(conn: Connection) -> None:
            self.queries.append(dict(conn.request.query))
            self.query_items.append(conn.request.query_items)

        @self.app.direct("join")
        async def join(room: str, conn: Connection) -> str:
            await conn.subscribe(f"room:{room}")
            await self.answering.wait()
            return room

        @self.app.direct("kick")
        async def kick(code: int, conn: Connection) -> None:
            await conn.close(code)

    def hold_connections(self) -> None:
        self.admitting = trio.Event()

    async def publish(self, first: int, last: int, topic: str = "room:1") -> None:
        for n in range(first, last + 1):
            await self.app.publish(topic, "msg", n)

    def presented(self, connection: int = -1) -> Any:
        """The positions connection ``connection`` presented (JSON), if any."""
        value = self.queries[connection].get("wsroute.recover")
        return None if value is None else orjson.loads(value)


def alice(url: str, **options: Any) -> Any:
    options.setdefault("reconnect", FAST)
    return connect(url, token="alice-token", **options)


async def next_of(stream: AsyncIterator[Any]) -> Any:
    with trio.fail_after(TIMEOUT):
        return await stream.__anext__()


async def until_state(changes: AsyncIterator[StateChange], state: State) -> None:
    while (await next_of(changes)).state is not state:
        pass


def recovery(topic: str = "room:1", **data: Any) -> Event:
    return Event("wsroute.recovery", topic, data)


async def drop_and_publish(client: Client, room: Room, first: int, last: int) -> None:
    """Drop the client's connection (1012, server side), publish events ``first`` to
    ``last`` while it is away, then let it back in; returns once it is open."""
    changes = client.state_changes()
    room.hold_connections()
    await client.request("kick", 1012)  # answered, then closed
    assert (await next_of(changes)).state is State.RECONNECTING
    await room.publish(first, last)
    room.admitting.set()
    await until_state(changes, State.OPEN)


@pytest.fixture
async def room(serve: Serve) -> AsyncIterator[tuple[Room, str]]:
    served = Room()
    port = await serve(served.app)
    yield served, f"ws://127.0.0.1:{port}/"


@pytest.mark.parametrize("msgpack", [False, True])
async def test_a_reconnect_gets_the_missed_events_in_order_then_the_marker_then_live_ones(
    room: tuple[Room, str], msgpack: bool
) -> None:
    server, url = room
    async with alice(url, msgpack=msgpack) as client:
        assert client.subprotocol == ("wsroute.v1.msgpack" if msgpack else None)
        assert "wsroute.recover" not in server.queries[0]  # nothing to present yet
        events = client.events(topic="room:1")
        await client.request("join", "1", replay=True)
        await server.publish(1, 3)
        before = [await next_of(events) for _ in range(3)]
        epoch = before[0].epoch
        assert [(e.type, e.data, e.offset, e.epoch) for e in before] == [
            ("msg", n, n, epoch) for n in (1, 2, 3)
        ]
        assert client.positions == {"room:1": Position(3, epoch)}

        changes = client.state_changes()
        server.hold_connections()
        server.answering = trio.Event()  # the replayed join's reply waits
        await client.request("kick", 1012)
        assert (await next_of(changes)).state is State.RECONNECTING
        await server.publish(4, 13)
        server.admitting.set()
        missed = [await next_of(events) for _ in range(10)]
        marker = await next_of(events)
        # All of it came before the replayed join's reply: the client is not open yet.
        assert client.state is State.RECONNECTING
        assert server.presented() == {"room:1": [3, epoch]}
        assert [(e.data, e.offset, e.epoch) for e in missed] == [
            (n, n, epoch) for n in range(4, 14)
        ]
        assert marker == recovery(recovered=True, offset=13, epoch=epoch, missed=10)
        assert client.positions == {"room:1": Position(13, epoch)}
        server.answering.set()
        await until_state(changes, State.OPEN)

        await server.publish(14, 15)
        live = [await next_of(events) for _ in range(2)]
        assert [(e.data, e.offset) for e in live] == [(14, 14), (15, 15)]
        assert client.positions == {"room:1": Position(15, epoch)}
        await client.aclose()
        assert [event async for event in events] == []  # no duplicate, nothing else


async def test_the_app_learns_from_recovery_events_by_type(room: tuple[Room, str]) -> None:
    server, url = room
    async with alice(url) as client:
        markers = client.events("wsroute.recovery")
        await client.request("join", "1", replay=True)
        await client.request("join", "2", replay=True)
        await server.publish(1, 1, "room:1")
        await server.publish(1, 1, "room:2")
        await drop_and_publish(client, server, 2, 3)
        epochs = {topic: position.epoch for topic, position in client.positions.items()}
        assert server.presented() == {
            "room:1": [1, epochs["room:1"]],
            "room:2": [1, epochs["room:2"]],
        }
        assert [await next_of(markers) for _ in range(2)] == [
            recovery("room:1", recovered=True, offset=3, epoch=epochs["room:1"], missed=2),
            recovery("room:2", recovered=True, offset=1, epoch=epochs["room:2"], missed=0),
        ]


async def test_history_too_short_says_so_then_recovers_from_where_the_topic_stood(
    serve: Serve,
) -> None:
    server = Room(size=5)
    url = f"ws://127.0.0.1:{await serve(server.app)}/"
    async with alice(url) as client:
        events = client.events(topic="room:1")
        await client.request("join", "1", replay=True)
        await server.publish(1, 1)
        epoch = (await next_of(events)).epoch
        await drop_and_publish(client, server, 2, 21)
        assert server.presented() == {"room:1": [1, epoch]}
        assert await next_of(events) == recovery(
            recovered=False, offset=21, epoch=epoch, missed=0, reason="too_old"
        )
        assert client.positions == {"room:1": Position(21, epoch)}  # where it stands now

        await drop_and_publish(client, server, 22, 24)
        assert server.presented() == {"room:1": [21, epoch]}
        assert [(e.data, e.offset) for e in [await next_of(events) for _ in range(3)]] == [
            (22, 22),
            (23, 23),
            (24, 24),
        ]
        assert await next_of(events) == recovery(recovered=True, offset=24, epoch=epoch, missed=3)


async def test_a_new_server_with_a_new_epoch_says_so_then_recovers_from_its_position(
    nursery: trio.Nursery,
) -> None:
    first = Room()
    port: int = await nursery.start(first.app.serve, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/"
    async with alice(url) as client:
        changes = client.state_changes()
        events = client.events(topic="room:1")
        await client.request("join", "1", replay=True)
        await first.publish(1, 2)
        old = [await next_of(events) for _ in range(2)][-1].epoch
        first.app.shutdown()  # 1001: the client reconnects, refused until the next serves
        assert (await next_of(changes)).state is State.RECONNECTING

        second = Room()  # and a new memory broker: a new epoch
        second.hold_connections()
        await nursery.start(second.app.serve, "127.0.0.1", port)
        await second.publish(1, 4)
        second.admitting.set()
        await until_state(changes, State.OPEN)
        assert second.presented() == {"room:1": [2, old]}
        marker = await next_of(events)
        new = marker.data["epoch"]
        assert new != old
        assert marker == recovery(
            recovered=False, offset=4, epoch=new, missed=0, reason="epoch_changed"
        )
        assert client.positions == {"room:1": Position(4, new)}

        await drop_and_publish(client, second, 5, 6)
        assert second.presented() == {"room:1": [4, new]}
        assert [(e.data, e.offset, e.epoch) for e in [await next_of(events) for _ in range(2)]] == [
            (5, 5, new),
            (6, 6, new),
        ]
        assert await next_of(events) == recovery(recovered=True, offset=6, epoch=new, missed=2)


async def test_seeded_positions_are_presented_on_the_first_connection(
    room: tuple[Room, str],
) -> None:
    server, url = room
    await server.publish(1, 5)
    epoch = (await server.app.history("room:1")).position.epoch
    async with alice(url, positions={"room:1": (2, epoch)}) as client:
        assert server.presented(0) == {"room:1": [2, epoch]}
        assert client.positions == {"room:1": Position(2, epoch)}
        events = client.events(topic="room:1")
        await client.request("join", "1")
        assert [(await next_of(events)).data for _ in range(3)] == [3, 4, 5]
        assert await next_of(events) == recovery(recovered=True, offset=5, epoch=epoch, missed=3)
        saved = client.positions
    async with alice(url, positions=saved) as client:  # as after a restart
        assert server.presented() == {"room:1": [5, epoch]}


async def test_without_recover_nothing_is_kept_or_presented(room: tuple[Room, str]) -> None:
    server, url = room
    async with alice(url, recover=False) as client:
        events = client.events()
        await client.request("join", "1", replay=True)
        await server.publish(1, 1)
        first = await next_of(events)
        assert first.offset == 1 and first.epoch  # still on the events
        await drop_and_publish(client, server, 2, 3)
        await server.publish(4, 4)
        assert (await next_of(events)).data == 4  # 2 and 3 are lost, nothing says so
        assert client.positions == {}
    assert [query.get("wsroute.recover") for query in server.queries] == [None, None]


async def test_positions_are_checked_before_connecting(room: tuple[Room, str]) -> None:
    _, url = room
    with pytest.raises(ValueError, match="only with recover=True"):
        async with alice(url, recover=False, positions={"room:1": (1, "e")}):
            pass
    with pytest.raises(ValueError, match=r"the position of 'room:1' must be \(offset, epoch\)"):
        async with alice(url, positions={"room:1": (1, 2)}):
            pass


async def test_the_parameter_joins_the_urls_own_query_and_token(room: tuple[Room, str]) -> None:
    server, url = room
    odd = 'room:é & =+%"[]#?/'
    seeds = {"room:1": (7, "k3JqbW1x"), odd: (0, "e" * 64)}
    own = f"{url}?token=alice-token&note=a%20b+c&&flag&wsroute.recover=%7B%7D"
    async with connect(own, reconnect=FAST, positions=seeds) as client:  # no token= here
        await drop_and_publish(client, server, 1, 1)
    for query, items in zip(server.queries, server.query_items, strict=True):
        assert query["token"] == "alice-token" and query["note"] == "a b c" and query["flag"] == ""
        assert orjson.loads(query["wsroute.recover"]) == {
            "room:1": [7, "k3JqbW1x"],
            odd: [0, "e" * 64],
        }
        assert [name for name, _ in items] == ["token", "note", "flag", "wsroute.recover"]
    assert len(server.queries) == 2


async def test_more_topics_than_the_server_takes_present_the_most_recent_and_warn_once(
    room: tuple[Room, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, url = room
    count = MAX_RECOVER_TOPICS + 44
    seeds = {f"t{n}": (n, "e") for n in range(count)}
    with caplog.at_level(logging.WARNING, logger="wsroute.client"):
        async with alice(url, positions=seeds) as client:
            await drop_and_publish(client, server, 1, 1)
    for connection in (0, 1):
        assert server.presented(connection) == {f"t{n}": [n, "e"] for n in range(44, count)}
    warnings = [r.getMessage() for r in caplog.records if "more than fit" in r.getMessage()]
    assert warnings == [
        f"{url}: {count} topics with history seen, more than fit in wsroute.recover: the"
        f" {MAX_RECOVER_TOPICS} most recently updated are presented, the others are not recovered"
    ]
