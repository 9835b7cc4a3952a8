"""The broker interface (``wsroute.brokers._base``): what a subclass inherits, on a
minimal session that records the calls it gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from wsroute import BrokerError
from wsroute.brokers import Broker, BrokerMessage, BrokerSession, BrokerState, Position


class Recording(BrokerSession):
    """Implements only the abstract methods; ``fail_on`` makes one subscribe fail."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_on = fail_on

    async def publish(self, topic: str, data: bytes) -> None:
        self.calls.append(("publish", topic))

    async def subscribe(self, topic: str) -> None:
        await trio.lowlevel.checkpoint()
        if topic == self.fail_on:
            raise BrokerError(f"cannot subscribe {topic}")
        self.calls.append(("subscribe", topic))

    async def unsubscribe(self, topic: str) -> None:
        await trio.lowlevel.checkpoint()
        self.calls.append(("unsubscribe", topic))

    async def __anext__(self) -> BrokerMessage:
        raise StopAsyncIteration


class Minimal(Broker):
    def connect(self, *, on_state: object = None) -> AbstractAsyncContextManager[BrokerSession]:
        @asynccontextmanager
        async def session() -> AsyncIterator[BrokerSession]:
            yield Recording()

        return session()


async def test_subscribe_many_subscribes_each_topic_in_order() -> None:
    session = Recording()
    await session.subscribe_many(["a", "b", "a"])
    assert session.calls == [("subscribe", "a"), ("subscribe", "b"), ("subscribe", "a")]


async def test_unsubscribe_many_unsubscribes_each_topic_in_order() -> None:
    session = Recording()
    await session.unsubscribe_many(("b", "a"))
    assert session.calls == [("unsubscribe", "b"), ("unsubscribe", "a")]


async def test_a_failing_subscribe_stops_subscribe_many_and_keeps_the_earlier_ones() -> None:
    session = Recording(fail_on="b")
    with pytest.raises(BrokerError, match="cannot subscribe b"):
        await session.subscribe_many(["a", "b", "c"])
    assert session.calls == [("subscribe", "a")]


async def test_no_topics_is_no_call() -> None:
    session = Recording()
    await session.subscribe_many([])
    await session.unsubscribe_many([])
    assert session.calls == []


async def test_a_session_is_its_own_iterator() -> None:
    session = Recording()
    assert session.__aiter__() is session
    assert [message async for message in session] == []


async def test_a_broker_needs_only_connect() -> None:
    broker = Minimal()
    assert (broker.backlog, broker.describe()) == (4096, "Minimal")
    async with broker.connect() as session:
        assert session.subscribe_may_wait  # the cautious default
        await session.publish("t", b"x")


def test_the_abstract_parts_must_be_implemented() -> None:
    class NoConnect(Broker):
        pass

    class NoAnext(BrokerSession):
        async def publish(self, topic: str, data: bytes) -> None: ...
        async def subscribe(self, topic: str) -> None: ...
        async def unsubscribe(self, topic: str) -> None: ...

    with pytest.raises(TypeError, match="connect"):
        NoConnect()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="__anext__"):
        NoAnext()  # type: ignore[abstract]


def test_messages_and_states() -> None:
    message = BrokerMessage("t", b"data")
    assert (message.topic, message.data, message.position) == tuple(message) == ("t", b"data", None)
    kept = BrokerMessage("t", b"data", Position(3, "e"))
    assert kept.position == (3, "e")
    assert [state.value for state in BrokerState] == ["connected", "disconnected"]
