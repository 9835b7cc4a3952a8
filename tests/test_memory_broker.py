"""The embedded broker (``wsroute.brokers.memory``); ``from_url``: tests/test_broker_urls.py."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from wsroute import BrokerClosed, BrokerError
from wsroute.brokers import Broker, BrokerMessage, BrokerSession, MemoryBroker


async def nothing_arrives(session: BrokerSession, seconds: float = 1) -> bool:
    """Whether ``session`` yields nothing within ``seconds`` (use with autojump_clock)."""
    with trio.move_on_after(seconds):
        await session.__anext__()
        return False
    return True


async def next_message(session: BrokerSession) -> BrokerMessage:
    with trio.fail_after(1):
        return await session.__anext__()


def test_memory_broker_is_a_broker() -> None:
    broker = MemoryBroker()
    assert isinstance(broker, Broker)
    assert broker.describe() == "memory://"
    assert broker.backlog == 4096


@pytest.mark.parametrize("backlog", [0, -1])
def test_backlog_must_be_positive(backlog: int) -> None:
    with pytest.raises(ValueError, match="backlog"):
        MemoryBroker(backlog=backlog)


async def test_fan_out_to_every_subscribed_session_including_the_publisher(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = MemoryBroker()
    async with (
        broker.connect() as publisher,
        broker.connect() as subscriber,
        broker.connect() as bystander,
    ):
        await publisher.subscribe("room")
        await subscriber.subscribe("room")
        await bystander.subscribe("elsewhere")
        await publisher.publish("room", b"hello")
        expected = BrokerMessage("room", b"hello")
        assert await next_message(publisher) == expected
        assert await next_message(subscriber) == expected
        assert await nothing_arrives(bystander)
        assert await nothing_arrives(publisher)


async def test_sessions_on_different_brokers_are_isolated(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with MemoryBroker().connect() as one, MemoryBroker().connect() as two:
        await two.subscribe("t")
        await one.publish("t", b"x")
        assert await nothing_arrives(two)


async def test_per_publisher_order_per_topic() -> None:
    broker = MemoryBroker()
    async with broker.connect() as publisher, broker.connect() as subscriber:
        await subscriber.subscribe("t")
        await subscriber.subscribe("u")
        for n in range(100):
            await publisher.publish("t", b"%d" % n)
            await publisher.publish("u", b"u%d" % n)
        received = [await next_message(subscriber) for _ in range(200)]
    assert [m.data for m in received if m.topic == "t"] == [b"%d" % n for n in range(100)]
    assert [m.data for m in received if m.topic == "u"] == [b"u%d" % n for n in range(100)]


async def test_iterating_a_session(nursery: trio.Nursery) -> None:
    broker = MemoryBroker()
    received: list[BrokerMessage] = []
    async with broker.connect() as publisher:
        async with broker.connect() as subscriber:
            await subscriber.subscribe("t")

            async def consume() -> None:
                async for message in subscriber:
                    received.append(message)

            nursery.start_soon(consume)
            for n in range(3):
                await publisher.publish("t", b"%d" % n)
            await trio.testing.wait_all_tasks_blocked()
        # The subscriber's context exited: its iteration ended.
        await trio.testing.wait_all_tasks_blocked()
        assert nursery.child_tasks == set()
    assert received == [BrokerMessage("t", b"%d" % n) for n in range(3)]


async def test_unsubscribe_stops_delivery(autojump_clock: trio.abc.Clock) -> None:
    broker = MemoryBroker()
    async with broker.connect() as publisher, broker.connect() as subscriber:
        await subscriber.subscribe("t")
        await publisher.publish("t", b"1")
        await subscriber.unsubscribe("t")
        await publisher.publish("t", b"2")
        assert await next_message(subscriber) == BrokerMessage("t", b"1")
        assert await nothing_arrives(subscriber)


async def test_subscribe_is_refcounted(autojump_clock: trio.abc.Clock) -> None:
    broker = MemoryBroker()
    async with broker.connect() as publisher, broker.connect() as subscriber:
        await subscriber.subscribe("t")
        await subscriber.subscribe("t")
        await publisher.publish("t", b"1")
        # One message, not two: the second subscribe only raises the count.
        assert await next_message(subscriber) == BrokerMessage("t", b"1")
        assert await nothing_arrives(subscriber)

        await subscriber.unsubscribe("t")
        await publisher.publish("t", b"2")
        assert await next_message(subscriber) == BrokerMessage("t", b"2")

        await subscriber.unsubscribe("t")
        await publisher.publish("t", b"3")
        assert await nothing_arrives(subscriber)


async def test_unsubscribe_without_subscription_is_harmless(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = MemoryBroker()
    async with broker.connect() as publisher, broker.connect() as subscriber:
        await subscriber.unsubscribe("t")
        await subscriber.subscribe("t")
        await publisher.publish("t", b"1")
        assert await next_message(subscriber) == BrokerMessage("t", b"1")


async def test_publish_to_a_topic_nobody_subscribes_is_fine() -> None:
    broker = MemoryBroker()
    async with broker.connect() as session:
        with trio.fail_after(1):
            await session.publish("nobody", b"x")
            await session.publish("nobody", b"")


async def test_closed_session_refuses_operations_and_ends_iteration() -> None:
    broker = MemoryBroker()
    async with broker.connect() as session:
        await session.subscribe("t")
    with pytest.raises(BrokerClosed):
        await session.publish("t", b"x")
    with pytest.raises(BrokerClosed):
        await session.subscribe("t")
    with pytest.raises(BrokerClosed):
        await session.unsubscribe("t")
    with pytest.raises(StopAsyncIteration):
        await session.__anext__()
    assert [message async for message in session] == []
    assert issubclass(BrokerClosed, BrokerError)


async def test_closed_session_no_longer_receives_and_does_not_break_publishers() -> None:
    broker = MemoryBroker()
    async with broker.connect() as publisher, broker.connect() as survivor:
        async with broker.connect() as leaver:
            await leaver.subscribe("t")
            await survivor.subscribe("t")
        await publisher.publish("t", b"after")
        assert await next_message(survivor) == BrokerMessage("t", b"after")


async def test_publisher_waits_when_a_subscriber_backlog_is_full(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    broker = MemoryBroker(backlog=3)
    async with broker.connect() as subscriber, broker.connect() as publisher:
        await subscriber.subscribe("t")
        for n in range(3):
            with trio.fail_after(1):
                await publisher.publish("t", b"%d" % n)
        with trio.move_on_after(10) as scope:
            await publisher.publish("t", b"cancelled")
        assert scope.cancelled_caught

        done = trio.Event()

        async def publish_fourth() -> None:
            await publisher.publish("t", b"3")
            done.set()

        nursery.start_soon(publish_fourth)
        await trio.sleep(10)
        assert not done.is_set()
        assert await next_message(subscriber) == BrokerMessage("t", b"0")
        with trio.fail_after(1):
            await done.wait()
        # The cancelled publish delivered nothing.
        assert [await next_message(subscriber) for _ in range(3)] == [
            BrokerMessage("t", b"1"),
            BrokerMessage("t", b"2"),
            BrokerMessage("t", b"3"),
        ]
        assert await nothing_arrives(subscriber)


async def test_subscribe_is_a_checkpoint_and_unsubscribe_is_never_cancelled() -> None:
    # subscribe_may_wait = False lets a connection end without a shield: its
    # unsubscribes yield to the scheduler but never raise Cancelled.
    async with MemoryBroker().connect() as session:
        assert session.subscribe_may_wait is False
        await session.subscribe("t")
        with trio.CancelScope() as scope:
            scope.cancel()
            await session.unsubscribe("t")
            await session.unsubscribe("never subscribed")
        assert not scope.cancelled_caught
        assert session._counts == {}
        with trio.CancelScope() as scope:
            scope.cancel()
            await session.subscribe("t")  # a checkpoint, as any trio async function
        assert scope.cancelled_caught
        assert session._counts == {}
        with trio.testing.assert_checkpoints():
            await session.subscribe("t")
