"""``check_broker``: the contract every broker implementation must keep.

The checks use fresh topic names, so they can run against a shared server. "Nothing
was delivered" is proven without waiting for silence: the publisher then publishes a
sentinel on another topic, and per-publisher order means the sentinel must be the
subscriber's next message. Run them under ``autojump_clock`` for in-process brokers;
they also work in real time against a networked broker.

The ``history_*`` checks (``_history_checks``) run only against sessions that say
``keeps_history``, the ``presence_*`` checks (``_presence_checks``) only against those
that say ``keeps_presence``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import trio

from .._errors import BrokerClosed
from .._util import collapse_exception_group
from ..brokers import BrokerMessage
from ._checktools import (
    KEEP,
    QUIET,
    TIMEOUT,
    BrokerFactory,
    Check,
    expect_only_sentinel,
    fresh_topics,
    make,
    receive,
)
from ._history_checks import (
    check_history_delivery,
    check_history_fifo,
    check_history_first_read,
    check_history_offsets,
    check_history_reads,
    check_history_size,
    check_history_ttl,
    check_history_unsupported,
)
from ._presence_checks import (
    check_presence_events,
    check_presence_expiry,
    check_presence_heartbeat,
    check_presence_remove_once,
    check_presence_replace,
    check_presence_shared,
    check_presence_sweep,
    check_presence_unsupported,
)

#: Seconds one whole check may take before it is failed rather than left hanging.
CHECK_DEADLINE: Final = 120.0


async def check_fan_out(make_broker: BrokerFactory) -> None:
    """A message reaches every subscribed session, the publisher's own included."""
    broker = await make(make_broker)
    topic, other = fresh_topics("fan", "other")
    async with broker.connect() as pub, broker.connect() as a, broker.connect() as b:
        for session in (pub, a, b):
            await session.subscribe(topic)
        await pub.publish(topic, b"hello")
        for name, session in (("publisher", pub), ("subscriber a", a), ("subscriber b", b)):
            message = await receive(session, f"fan-out to {name}")
            assert message == BrokerMessage(topic, b"hello"), f"{name} got {message!r}"
        await a.subscribe(other)
        await expect_only_sentinel(pub, a, other, "fan-out delivers exactly once")


async def check_order(make_broker: BrokerFactory) -> None:
    """Messages from one publisher arrive in publish order, per topic and across topics."""
    broker = await make(make_broker)
    first, second = fresh_topics("first", "second")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(first)
        await sub.subscribe(second)
        sent = [BrokerMessage(first if i % 3 else second, str(i).encode()) for i in range(200)]

        async def publish_all() -> None:
            for message in sent:
                await pub.publish(message.topic, message.data)

        async with trio.open_nursery() as nursery:
            # Publish while reading: a broker may apply backpressure below 200.
            nursery.start_soon(publish_all)
            got = [await receive(sub, f"message {i} of 200") for i in range(len(sent))]
        if not sub.orders_across_topics:  # compare per topic
            got = sorted(got, key=lambda message: message.topic)
            sent = sorted(sent, key=lambda message: message.topic)
        assert got == sent, "messages arrived out of publish order"


async def check_unsubscribe(make_broker: BrokerFactory) -> None:
    """After unsubscribe, a topic's messages are no longer delivered to that session."""
    broker = await make(make_broker)
    topic, sentinel = fresh_topics("topic", "sentinel")
    async with broker.connect() as pub, broker.connect() as sub, broker.connect() as stays:
        await sub.subscribe(topic)
        await sub.subscribe(sentinel)
        await stays.subscribe(topic)
        await sub.unsubscribe(topic)
        await pub.publish(topic, b"after")
        assert await receive(stays, "another session keeps its subscription") == BrokerMessage(
            topic, b"after"
        )
        await expect_only_sentinel(pub, sub, sentinel, "unsubscribe stops delivery")


async def check_refcount(make_broker: BrokerFactory) -> None:
    """Subscribing twice needs two unsubscribes, and delivers once, not once per
    subscription; a stray unsubscribe is harmless."""
    broker = await make(make_broker)
    topic, sentinel, never = fresh_topics("topic", "sentinel", "never")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(sentinel)
        await sub.unsubscribe(never)  # never subscribed: no error, no effect
        await sub.subscribe(topic)
        await sub.subscribe(topic)
        await pub.publish(topic, b"held twice")
        message = await receive(sub, "a topic subscribed twice")
        assert message == BrokerMessage(topic, b"held twice"), f"got {message!r}"
        await expect_only_sentinel(pub, sub, sentinel, "a topic subscribed twice delivers once")
        await sub.unsubscribe(topic)
        await pub.publish(topic, b"one left")
        message = await receive(sub, "one subscription of two remains")
        assert message == BrokerMessage(topic, b"one left"), f"got {message!r}"
        await sub.unsubscribe(topic)
        await pub.publish(topic, b"none left")
        await expect_only_sentinel(pub, sub, sentinel, "the last unsubscribe stops delivery")


async def check_many(make_broker: BrokerFactory) -> None:
    """``subscribe_many`` and ``unsubscribe_many`` count as one call per topic."""
    broker = await make(make_broker)
    first, second, kept, sentinel = fresh_topics("first", "second", "kept", "sentinel")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe_many([first, second, kept, sentinel])
        await sub.subscribe(kept)
        for topic in (first, second):
            await pub.publish(topic, b"many")
            message = await receive(sub, f"subscribe_many subscribes {topic}")
            assert message == BrokerMessage(topic, b"many"), f"got {message!r}"
        await sub.unsubscribe_many([first, second, kept])
        await pub.publish(kept, b"still one")
        message = await receive(sub, "unsubscribe_many drops one subscription of each")
        assert message == BrokerMessage(kept, b"still one"), f"got {message!r}"
        for topic in (first, second):
            await pub.publish(topic, b"gone")
        await expect_only_sentinel(pub, sub, sentinel, "unsubscribe_many stops delivery")


async def check_no_subscribers(make_broker: BrokerFactory) -> None:
    """Publishing to a topic nobody subscribes to succeeds and reaches nobody."""
    broker = await make(make_broker)
    lonely, sentinel = fresh_topics("lonely", "sentinel")
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(sentinel)
        await pub.publish(lonely, b"into the void")
        await expect_only_sentinel(pub, sub, sentinel, "no subscriber, no delivery")


async def check_payloads(make_broker: BrokerFactory) -> None:
    """Any bytes travel unchanged: empty, non-UTF-8, large, and with the first bytes a
    broker might use to mark its own framing."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("bytes")
    payloads = [b"", b"\x00\xff\xfe binary", "ünïcode ✓".encode(), b"x" * 1_000_000]
    payloads += [b"\x04", b"\x05", b"\x041:e\nlooks kept", b"\x05\x04"]
    async with broker.connect() as pub, broker.connect() as sub:
        await sub.subscribe(topic)

        async def publish_all() -> None:
            for data in payloads:
                await pub.publish(topic, data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_all)  # while reading: the backlog may be small
            for data in payloads:
                message = await receive(sub, f"payload of {len(data)} bytes")
                assert message == BrokerMessage(topic, data), (
                    f"payload changed: {message.data[:40]!r}"
                )


async def check_closed(make_broker: BrokerFactory) -> None:
    """A closed session refuses every operation with BrokerClosed and stops iterating."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("closed")
    async with broker.connect() as session:
        await session.subscribe(topic)
    operations: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("publish", lambda: session.publish(topic, b"x")),
        ("subscribe", lambda: session.subscribe(topic)),
        ("unsubscribe", lambda: session.unsubscribe(topic)),
    ]
    if session.keeps_history:
        operations += [
            ("publish_kept", lambda: session.publish_kept(topic, b"x", KEEP)),
            ("read_history", lambda: session.read_history(topic, KEEP)),
        ]
    if session.keeps_presence:
        operations += [
            ("presence_add", lambda: session.presence_add(topic, "m", "node", b"x")),
            ("presence_remove", lambda: session.presence_remove(topic, "m", "node")),
            ("presence_list", lambda: session.presence_list(topic)),
            ("presence_heartbeat", lambda: session.presence_heartbeat("node", 1.0)),
            ("presence_sweep", session.presence_sweep),
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
    broker = await make(make_broker)
    backlog = broker.backlog
    assert isinstance(backlog, int) and backlog > 0, f"broker.backlog must be > 0: {backlog!r}"
    (topic,) = fresh_topics("backlog")
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
        # A failed assert in a check's nursery comes out as itself, not in a group.
        with trio.move_on_after(CHECK_DEADLINE), collapse_exception_group():
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
        "history_unsupported": check_history_unsupported,
        "history_offsets": check_history_offsets,
        "history_delivery": check_history_delivery,
        "history_reads": check_history_reads,
        "history_size": check_history_size,
        "history_ttl": check_history_ttl,
        "history_first_read": check_history_first_read,
        "history_fifo": check_history_fifo,
        "presence_unsupported": check_presence_unsupported,
        "presence_shared": check_presence_shared,
        "presence_remove_once": check_presence_remove_once,
        "presence_replace": check_presence_replace,
        "presence_expiry": check_presence_expiry,
        "presence_sweep": check_presence_sweep,
        "presence_heartbeat": check_presence_heartbeat,
        "presence_events": check_presence_events,
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
