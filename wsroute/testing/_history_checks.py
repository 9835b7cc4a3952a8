"""The history part of the broker contract: what ``publish_kept`` and ``read_history``
promise (``BrokerSession``), checked on sessions that say ``keeps_history``; against
the others, only that they refuse.

``history_ttl`` waits 0.3 s for events to outlive a ``ttl`` of 0.2 s: a jump under
``autojump_clock``, a real wait against a networked broker (whose clock cannot be
jumped). Every other check takes a few round trips.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._errors import HistoryUnsupported
from .._history import History, Position
from ..brokers import BrokerMessage, BrokerSession, HistoryPage
from ._checktools import KEEP, BrokerFactory, fresh_topics, make, receive_all


async def check_history_unsupported(make_broker: BrokerFactory) -> None:
    """A session that keeps no history says so: both history calls raise
    HistoryUnsupported (nothing to check on a session that keeps it)."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("unsupported")
    async with broker.connect() as session:
        if session.keeps_history:
            return
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("publish_kept", lambda: session.publish_kept(topic, b"x", KEEP)),
            ("read_history", lambda: session.read_history(topic, KEEP)),
        ]
        for name, call in calls:
            try:
                await call()
            except HistoryUnsupported:
                continue
            raise AssertionError(f"{name} on a session without history did not raise")


async def check_history_offsets(make_broker: BrokerFactory) -> None:
    """Kept messages are numbered 1, 2, ... in one epoch, and read back as published."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("offsets")
    async with broker.connect() as session:
        if not session.keeps_history:
            return
        positions = [await session.publish_kept(topic, b"%d" % n, KEEP) for n in range(1, 6)]
        epoch = positions[0].epoch
        assert isinstance(epoch, str) and epoch, f"the epoch is {epoch!r}"
        assert positions == [Position(n, epoch) for n in range(1, 6)], (
            f"publish_kept numbered {positions}, not 1 to 5 in one epoch"
        )
        page = await session.read_history(topic, KEEP)
        kept = [BrokerMessage(topic, b"%d" % n, Position(n, epoch)) for n in range(1, 6)]
        assert page == HistoryPage(Position(5, epoch), kept), f"read back {page!r}"


async def check_history_delivery(make_broker: BrokerFactory) -> None:
    """Every subscriber, the publisher's session included, receives kept messages with
    their position, in offset order, also when two sessions publish at once."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("delivery")
    count = 40
    async with broker.connect() as one, broker.connect() as two, broker.connect() as sub:
        if not one.keeps_history:
            return
        await one.subscribe(topic)
        await sub.subscribe(topic)
        got: dict[str, list[BrokerMessage]] = {"the publisher's session": [], "another": []}

        async def publish(session: BrokerSession, name: bytes) -> None:
            for n in range(count // 2):
                await session.publish_kept(topic, name + b"%d" % n, KEEP)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_all, one, count, got["the publisher's session"])
            nursery.start_soon(receive_all, sub, count, got["another"])
            nursery.start_soon(publish, one, b"a")
            nursery.start_soon(publish, two, b"b")
        page = await sub.read_history(topic, KEEP)
        epoch = page.position.epoch
        for name, messages in got.items():
            positions = [message.position for message in messages]
            assert positions == [Position(n, epoch) for n in range(1, count + 1)], (
                f"{name} received positions {positions}, not 1 to {count} in order"
            )
            assert messages == page.messages, f"{name} received other messages than kept"
        for sender in (b"a", b"b"):
            sent = [m.data for m in page.messages if m.data.startswith(sender)]
            assert sent == [sender + b"%d" % n for n in range(count // 2)], "out of publish order"


async def check_history_reads(make_broker: BrokerFactory) -> None:
    """``read_history``: with ``since``, the oldest after it (at most ``limit``);
    without, the newest ``limit``; ``limit=0``, none; the latest position always."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("reads")
    async with broker.connect() as session:
        if not session.keeps_history:
            return
        for n in range(1, 11):
            top = await session.publish_kept(topic, b"%d" % n, KEEP)
        cases: list[tuple[dict[str, Any], list[int]]] = [
            ({}, list(range(1, 11))),
            ({"since": 3}, list(range(4, 11))),
            ({"since": 3, "limit": 2}, [4, 5]),
            ({"since": 0, "limit": 20}, list(range(1, 11))),
            ({"since": 10}, []),
            ({"limit": 3}, [8, 9, 10]),
            ({"limit": 20}, list(range(1, 11))),
            ({"limit": 0}, []),
            ({"since": 3, "limit": 0}, []),
        ]
        for options, expected in cases:
            page = await session.read_history(topic, KEEP, **options)
            call = f"read_history({', '.join(f'{k}={v}' for k, v in options.items())})"
            assert page.position == top, f"{call} said the topic is at {page.position}, not {top}"
            kept = [BrokerMessage(topic, b"%d" % n, Position(n, top.epoch)) for n in expected]
            got = [m.position.offset if m.position else None for m in page.messages]
            assert page.messages == kept, f"{call} returned offsets {got}, not {expected}"


async def check_history_size(make_broker: BrokerFactory) -> None:
    """Only the ``size`` newest messages are ever returned, exactly."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("size")
    small = History(size=5, ttl=300)
    async with broker.connect() as session:
        if not session.keeps_history:
            return
        for n in range(1, 13):
            await session.publish_kept(topic, b"%d" % n, small)
        for options, expected in [
            ({}, [8, 9, 10, 11, 12]),
            ({"since": 2}, [8, 9, 10, 11, 12]),
            ({"since": 9}, [10, 11, 12]),
            ({"limit": 10}, [8, 9, 10, 11, 12]),
            ({"since": 0, "limit": 2}, [8, 9]),
        ]:
            page = await session.read_history(topic, small, **options)
            got = [m.position.offset if m.position else None for m in page.messages]
            assert got == expected, f"size=5, read_history({options}): offsets {got}"


async def check_history_ttl(make_broker: BrokerFactory) -> None:
    """Messages older than ``ttl`` are never returned; the offsets go on."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("ttl")
    brief = History(size=100, ttl=0.2)
    async with broker.connect() as session:
        if not session.keeps_history:
            return
        for _ in (1, 2):
            old = await session.publish_kept(topic, b"old", brief)
        await trio.sleep(0.3)
        new = await session.publish_kept(topic, b"new", brief)
        assert new == Position(3, old.epoch), f"after the ttl, the next position was {new}"
        for options in ({}, {"since": 0}, {"limit": 5}):
            page = await session.read_history(topic, brief, **options)
            assert page == HistoryPage(new, [BrokerMessage(topic, b"new", new)]), (
                f"read_history({options}) after the ttl: {page!r}"
            )


async def check_history_first_read(make_broker: BrokerFactory) -> None:
    """A topic read before its first publish gets an epoch at offset 0, the same for
    every session, and the first publish continues it at offset 1."""
    broker = await make(make_broker)
    (topic,) = fresh_topics("first-read")
    async with broker.connect() as one, broker.connect() as two:
        if not one.keeps_history:
            return
        page = await one.read_history(topic, KEEP)
        epoch = page.position.epoch
        assert page.position.offset == 0 and page.messages == [], f"a new topic read {page!r}"
        assert isinstance(epoch, str) and epoch, f"the epoch is {epoch!r}"
        again = await two.read_history(topic, KEEP)
        assert again.position == page.position, f"read again: {again.position}"
        first = await two.publish_kept(topic, b"first", KEEP)
        assert first == Position(1, epoch), f"the first publish after a read is at {first}"


async def check_history_fifo(make_broker: BrokerFactory) -> None:
    """``publish`` and ``publish_kept`` from one session keep their order, on one
    topic and across topics; plain messages come without a position."""
    broker = await make(make_broker)
    kept_topic, plain_topic = fresh_topics("kept", "plain")
    async with broker.connect() as pub, broker.connect() as sub:
        if not pub.keeps_history:
            return
        await sub.subscribe_many([kept_topic, plain_topic])
        count = 30
        sent: list[BrokerMessage] = []
        got: list[BrokerMessage] = []

        async def publish() -> None:
            for n in range(count):
                data = b"%d" % n
                if n % 3 == 1:
                    position = await pub.publish_kept(kept_topic, data, KEEP)
                    sent.append(BrokerMessage(kept_topic, data, position))
                else:
                    topic = kept_topic if n % 3 else plain_topic
                    await pub.publish(topic, data)
                    sent.append(BrokerMessage(topic, data))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_all, sub, count, got)
            nursery.start_soon(publish)
        assert got == sent, "plain and kept messages arrived out of publish order"
