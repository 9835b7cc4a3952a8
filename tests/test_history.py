"""History (``wsroute._history``, ``App(history=...)``, ``app.history``): which topics
keep their events, the offsets and epochs events carry, and reading what is kept.

Recovery is in tests/test_recovery.py; the broker contract in wsroute.testing's
conformance checks; Redis in tests/test_redis_history.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from wsroute import (
    App,
    Connection,
    History,
    HistoryEvent,
    HistoryUnsupported,
    NotRunningError,
    Position,
    RegistrationError,
)
from wsroute.brokers import Broker, BrokerMessage, BrokerSession, MemoryBroker, StateListener
from wsroute.testing import Event, open_app, open_client


def make_app(**options: object) -> App:
    app = App(history={"room:*": History(size=5, ttl=60), "log": History(size=2, ttl=60)})

    @app.direct("join")
    async def join(topic: str, conn: Connection) -> None:
        await conn.subscribe(topic)

    @app.broadcast("say", topic=lambda text, conn: "room:1")
    async def say(text: str) -> dict[str, object]:
        return {"text": text, "raw": text.encode()}

    return app


async def test_events_on_kept_topics_carry_offset_and_epoch() -> None:
    app = make_app()
    async with open_app(app), open_client(app) as client:
        await client.request("join", "room:1")
        await client.request("join", "other")
        await app.publish("room:1", "msg", 1)
        await app.publish("room:1", "msg", 2)
        await app.publish("other", "msg", 3)
        first, second, plain = [await client.receive() for _ in range(3)]
        assert isinstance(first, Event) and isinstance(second, Event)
        assert (first.offset, second.offset) == (1, 2)
        assert first.epoch == second.epoch and first.epoch
        assert plain == Event("msg", "other", 3)  # no history: no position


async def test_a_broadcast_is_kept_with_bytes_intact() -> None:
    app = make_app()
    async with open_app(app), open_client(app, msgpack=True) as client:
        await client.request("join", "room:1")
        await client.request("say", "hi")
        event = await client.expect_event("say")
        assert event.data == {"text": "hi", "raw": b"hi"} and event.offset == 1
        kept = await app.history("room:1")
        assert kept.events == [HistoryEvent("say", {"text": "hi", "raw": b"hi"}, 1)]


async def test_history_reads_the_newest_or_those_after_an_offset() -> None:
    app = make_app()
    async with open_app(app):
        for n in range(1, 8):
            await app.publish("room:1", "msg", n)
        everything = await app.history("room:1")
        assert [e.data for e in everything.events] == [3, 4, 5, 6, 7]  # size=5
        assert [e.offset for e in everything.events] == [3, 4, 5, 6, 7]
        assert everything.position.offset == 7
        newest = await app.history("room:1", limit=2)
        assert [e.data for e in newest.events] == [6, 7]
        after = await app.history("room:1", since=4, limit=2)
        assert [e.data for e in after.events] == [5, 6]
        assert (await app.history("room:1", since=7)).events == []
        assert (await app.history("room:1", limit=0)).events == []
        assert after.position == everything.position


async def test_a_topic_never_published_to_starts_at_offset_zero() -> None:
    app = make_app()
    async with open_app(app):
        empty = await app.history("room:9")
        assert empty.events == [] and empty.position.offset == 0
        await app.publish("room:9", "msg", 1)
        kept = await app.history("room:9")
        assert kept.position == Position(1, empty.position.epoch)


async def test_the_first_matching_pattern_decides() -> None:
    app = App(history={"a:*": History(size=1, ttl=60), "a:b*": History(size=9, ttl=60)})
    async with open_app(app):
        for n in range(3):
            await app.publish("a:b", "msg", n)
        assert [e.data for e in (await app.history("a:b")).events] == [2]


async def test_history_of_a_topic_without_one_says_which_patterns_exist() -> None:
    app = make_app()
    async with open_app(app):
        with pytest.raises(HistoryUnsupported, match=r"'other' has no history.*'room:\*', 'log'"):
            await app.history("other")


@pytest.mark.parametrize("bad", [{"since": -1}, {"limit": -1}, {"since": 1.5}, {"limit": True}])
async def test_history_refuses_bad_bounds(bad: dict[str, object]) -> None:
    app = make_app()
    async with open_app(app):
        with pytest.raises(ValueError, match="must be an integer >= 0"):
            await app.history("room:1", **bad)  # type: ignore[arg-type]


async def test_history_needs_a_running_app() -> None:
    with pytest.raises(NotRunningError):
        await make_app().history("room:1")


class NoHistoryBroker(Broker):
    """A broker that keeps no history (the interface's default)."""

    def __init__(self) -> None:
        self.inner = MemoryBroker()

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        async with self.inner.connect() as session:
            yield _Plain(session)


class _Plain(BrokerSession):
    def __init__(self, session: BrokerSession) -> None:
        self.session = session

    async def publish(self, topic: str, data: bytes) -> None:
        await self.session.publish(topic, data)

    async def subscribe(self, topic: str) -> None:
        await self.session.subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        await self.session.unsubscribe(topic)

    async def __anext__(self) -> BrokerMessage:
        return await self.session.__anext__()


async def test_an_app_with_history_refuses_a_broker_without() -> None:
    app = App(broker=NoHistoryBroker(), history={"room:*": History(size=5, ttl=60)})
    with pytest.raises(HistoryUnsupported, match=r"keeps no history, which App\(history=\.\.\.\)"):
        async with open_app(app):
            pass
    plain = App(broker=NoHistoryBroker())  # without history, any broker does
    async with open_app(plain):
        await plain.publish("t", "x")
    with pytest.raises(HistoryUnsupported):
        async with NoHistoryBroker().connect() as session:
            await session.read_history("t", History(size=1, ttl=1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0, "ttl": 1}, "size must be an integer from 1 to 1000000"),
        ({"size": True, "ttl": 1}, "size must be an integer"),
        ({"size": 1, "ttl": 0}, "History ttl must be a positive number"),
        ({"size": 1, "ttl": 10, "meta_ttl": 5}, "meta_ttl .* must be at least its ttl"),
    ],
)
def test_history_bounds_are_checked(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        History(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ("room:*", "must map topic patterns to History"),
        ({"room:*": 100}, "maps 'room:\\*' to 100, not a History"),
        ({"": History(size=1, ttl=1)}, "a topic pattern is a non-empty string"),
    ],
)
def test_the_history_option_is_checked(history: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        App(history=history)  # type: ignore[arg-type]


def test_protocol_message_types_are_reserved() -> None:
    app = App()
    with pytest.raises(RegistrationError, match=r"names starting with 'wsroute\.' are reserved"):

        @app.direct("wsroute.recovery")
        async def handler() -> None: ...


async def test_memory_history_is_new_for_each_broker(autojump_clock: trio.abc.Clock) -> None:
    history = History(size=3, ttl=10, meta_ttl=100)
    broker = MemoryBroker()
    async with broker.connect() as session:
        first = await session.publish_kept("t", b"a", history)
        await trio.sleep(50)
        assert (await session.publish_kept("t", b"b", history)) == Position(2, first.epoch)
        await trio.sleep(101)  # idle past meta_ttl: the topic starts over
        again = await session.publish_kept("t", b"c", history)
        assert again.offset == 1 and again.epoch != first.epoch
    async with MemoryBroker().connect() as other:
        assert (await other.publish_kept("t", b"a", history)).epoch != again.epoch
