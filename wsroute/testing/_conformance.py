"""``check_broker``: the contract every broker implementation must keep.

The checks use fresh topic names, so they can run against a shared server. "Nothing
was delivered" is proven without waiting for silence: the publisher then publishes a
sentinel on another topic, and per-publisher order means the sentinel must be the
subscriber's next message. Run them under ``autojump_clock`` for in-process brokers;
they also work in real time against a networked broker.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from .._errors import BrokerClosed
from ..brokers import Broker, BrokerMessage, BrokerSession

BrokerFactory = Callable[[], Broker | Awaitable[Broker]]
Check = Callable[[BrokerFactory], Awaitable[None]]

#: Seconds one expected message may take to arrive.
TIMEOUT: Final = 5.0
#: Seconds of silence taken to mean "nothing more is coming" (bounded backlog check).
QUIET: Final = 0.5
#: Seconds one whole check may take before it is failed rather than left hanging.
CHECK_DEADLINE: Final = 120.0


async def _make(make_broker: BrokerFactory) -> Broker:
    broker = make_broker()
    if inspect.isawaitable(broker):
        broker = await broker
    assert isinstance(broker, Broker), f"make_broker returned {broker!r}, not a Broker"
    return broker


def _topics(*names: str) -> list[str]:
    token = secrets.token_hex(4)
    return [f"wsroute-check-{token}-{name}" for name in names]


async def _next(session: BrokerSession, what: str) -> BrokerMessage:
    with trio.move_on_after(TIMEOUT):
        try:
            return await session.__anext__()
        except StopAsyncIteration:
            raise AssertionError(f"{what}: the session's iteration ended") from None
    raise AssertionError(f"{what}: nothing arrived within {TIMEOUT:g} s")


async def _expect_only_sentinel(
    publisher: BrokerSession, subscriber: BrokerSession, sentinel: str, what: str
) -> None:
    await publisher.publish(sentinel, b"sentinel")
    message = await _next(subscriber, what)
    assert message == BrokerMessage(sentinel, b"sentinel"), (
        f"{what}: expected nothing before the sentinel, got {message!r}"
    )


async def check_fan_out(make_broker: BrokerFactory) -> None:
    """A message reaches every subscribed session, the publisher's own included."""
    broker = await _make(make_broker)
    topic, other = _topics("fan", "other")
    async with broker.connect() as pub, broker.connect() as a, broker.connect() as b:
        for session in (pub, a, b):
            await session.subscribe(topic)
        await pub.publish(topic, b"hello")
        for name, session in (("publisher", pub), ("subscriber a", a), ("subscriber b", b)):
            message = await _next(session, f"fan-out to {name}")
            assert message == BrokerMessage(topic, b"hello"), f"{name} got {message!r}"
        await a.subscribe(other)
        await _expect_only_sentinel(pub, a, other, "fan-out delivers exactly once")


async def check_order(make_broker: BrokerFactory) -> None:
    """Messages from one publisher arrive in publish order, per topic and across topics."""
    broker = await _make(make_broker)
    first, second = _topics("first", "second")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(first)
        await sub.subscribe(second)
        sent = [(first if i % 3 else second, str(i).encode()) for i in range(200)]

        async def publish_all() -> None:
            for topic, data in sent:
                await pub.publish(topic, data)

        async with trio.open_nursery() as nursery:
            # Publish while reading: a broker may apply backpressure below 200.
            nursery.start_soon(publish_all)
            got = [tuple(await _next(sub, f"message {i} of 200")) for i in range(len(sent))]
        assert got == sent, "messages arrived out of publish order"


async def check_unsubscribe(make_broker: BrokerFactory) -> None:
    """After unsubscribe, a topic's messages are no longer delivered to that session."""
    broker = await _make(make_broker)
    topic, sentinel = _topics("topic", "sentinel")
    async with broker.connect() as pub, broker.connect() as sub, broker.connect() as stays:
        await sub.subscribe(topic)
        await sub.subscribe(sentinel)
        await stays.subscribe(topic)
        await sub.unsubscribe(topic)
        await pub.publish(topic, b"after")
        assert await _next(stays, "another session keeps its subscription") == BrokerMessage(
            topic, b"after"
        )
        await _expect_only_sentinel(pub, sub, sentinel, "unsubscribe stops delivery")


async def check_refcount(make_broker: BrokerFactory) -> None:
    """Subscribing twice needs two unsubscribes; a stray unsubscribe is harmless."""
    broker = await _make(make_broker)
    topic, sentinel, never = _topics("topic", "sentinel", "never")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(sentinel)
        await sub.unsubscribe(never)  # never subscribed: no error, no effect
        await sub.subscribe(topic)
        await sub.subscribe(topic)
        await sub.unsubscribe(topic)
        await pub.publish(topic, b"one left")
        message = await _next(sub, "one subscription of two remains")
        assert message == BrokerMessage(topic, b"one left"), f"got {message!r}"
        await sub.unsubscribe(topic)
        await pub.publish(topic, b"none left")
        await _expect_only_sentinel(pub, sub, sentinel, "the last unsubscribe stops delivery")


async def check_many(make_broker: BrokerFactory) -> None:
    """``subscribe_many`` and ``unsubscribe_many`` count as one call per topic."""
    broker = await _make(make_broker)
    first, second, kept, sentinel = _topics("first", "second", "kept", "sentinel")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe_many([first, second, kept, sentinel])
        await sub.subscribe(kept)
        for topic in (first, second):
            await pub.publish(topic, b"many")
            message = await _next(sub, f"subscribe_many subscribes {topic}")
            assert message == BrokerMessage(topic, b"many"), f"got {message!r}"
        await sub.unsubscribe_many([first, second, kept])
        await pub.publish(kept, b"still one")
        message = await _next(sub, "unsubscribe_many drops one subscription of each")
        assert message == BrokerMessage(kept, b"still one"), f"got {message!r}"
        for topic in (first, second):
            await pub.publish(topic, b"gone")
        await _expect_only_sentinel(pub, sub, sentinel, "unsubscribe_many stops delivery")


async def check_no_subscribers(make_broker: BrokerFactory) -> None:
    """Publishing to a topic nobody subscribes to succeeds and reaches nobody."""
    broker = await _make(make_broker)
    lonely, sentinel = _topics("lonely", "sentinel")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(sentinel)
        await pub.publish(lonely, b"into the void")
        await _expect_only_sentinel(pub, sub, sentinel, "no subscriber, no delivery")


async def check_payloads(make_broker: BrokerFactory) -> None:
    """Any bytes travel unchanged: empty, non-UTF-8, large."""
    broker = await _make(make_broker)
    (topic,) = _topics("bytes")
    payloads = [b"", b"\x00\xff\xfe binary", "ünïcode ✓".encode(), b"x" * 1_000_000]
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(topic)
        for data in payloads:
            await pub.publish(topic, data)
        for data in payloads:
            message = await _next(sub, f"payload of {len(data)} bytes")
            assert message == BrokerMessage(topic, data), f"payload changed: {message.data[:40]!r}"


async def check_closed(make_broker: BrokerFactory) -> None:
    """A closed session refuses every operation with BrokerClosed and stops iterating."""
    broker = await _make(make_broker)
    (topic,) = _topics("closed")
    async with broker.connect() as session:
        await session.subscribe(topic)
    operations: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("publish", lambda: session.publish(topic, b"x")),
        ("subscribe", lambda: session.subscribe(topic)),
        ("unsubscribe", lambda: session.unsubscribe(topic)),
    ]
    for name, operation in operations:
        try:
            await operation()
        except BrokerClosed:
            continue
        raise AssertionError(f"{name} on a closed session did not raise BrokerClosed")
    with trio.move_on_after(TIMEOUT):
        try:
            message = await session.__anext__()
        except StopAsyncIteration:
            return
        raise AssertionError(f"a closed session still yielded {message!r}")
    raise AssertionError("iterating a closed session neither ended nor returned")


async def check_bounded_backlog(make_broker: BrokerFactory) -> None:
    """A subscriber that does not read holds at most ``broker.backlog`` messages."""
    broker = await _make(make_broker)
    backlog = broker.backlog
    assert isinstance(backlog, int) and backlog > 0, f"broker.backlog must be > 0: {backlog!r}"
    (topic,) = _topics("backlog")
    extra = 50
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(topic)
        published = 0
        with trio.move_on_after(TIMEOUT) as scope:
            for i in range(backlog + extra):
                await pub.publish(topic, str(i).encode())
                published += 1
        # Let messages still in flight inside a networked broker land first, so they
        # meet the full backlog rather than the room the drain below makes.
        await trio.sleep(QUIET)
        received = 0
        while True:
            with trio.move_on_after(QUIET):
                await sub.__anext__()
                received += 1
                continue
            break
        assert received <= backlog, (
            f"a subscriber that did not read got {received} messages later, more than"
            f" backlog={backlog}: its buffer is not bounded"
        )
        assert scope.cancelled_caught or published == backlog + extra
        assert received > 0, "the subscriber received nothing at all"


def _with_deadline(check: Check) -> Check:
    async def run(make_broker: BrokerFactory) -> None:
        with trio.move_on_after(CHECK_DEADLINE):
            await check(make_broker)
            return
        raise AssertionError(f"did not finish within {CHECK_DEADLINE:g} s (a broker hang?)")

    run.__name__ = run.__qualname__ = check.__name__
    run.__doc__ = check.__doc__
    return run


def broker_checks() -> dict[str, Check]:
    """Every conformance check by name, e.g. for ``pytest.mark.parametrize``.

    Each one fails, rather than hangs, if the broker blocks for ``CHECK_DEADLINE`` s.
    """
    checks = {
        "fan_out": check_fan_out,
        "order": check_order,
        "unsubscribe": check_unsubscribe,
        "refcount": check_refcount,
        "many": check_many,
        "no_subscribers": check_no_subscribers,
        "payloads": check_payloads,
        "closed": check_closed,
        "bounded_backlog": check_bounded_backlog,
    }
    return {name: _with_deadline(check) for name, check in checks.items()}


async def check_broker(make_broker: BrokerFactory) -> None:
    """Run every conformance check against brokers made by ``make_broker``.

    ``make_broker`` returns a new :class:`~wsroute.brokers.Broker` (or an awaitable of
    one) each call; each check uses its own.

    Raises:
        AssertionError: listing every check that failed and why.
    """
    failures = []
    for name, check in broker_checks().items():
        try:
            await check(make_broker)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    if failures:
        raise AssertionError("broker conformance failed:\n" + "\n".join(failures))
