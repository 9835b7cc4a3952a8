"""The broker conformance suite (``wsroute.testing._conformance``): the memory broker
passes it, and each check catches a broker broken in the way that check is about."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from wsroute import History
from wsroute.brokers import BrokerMessage, BrokerSession, HistoryPage, MemoryBroker
from wsroute.testing import broker_checks, check_broker


async def test_memory_broker_passes_conformance(autojump_clock):
    await check_broker(MemoryBroker)
    await check_broker(lambda: MemoryBroker(backlog=7))


class _NoRefcountBroker(MemoryBroker):
    """Broken on purpose: one unsubscribe drops every subscription to the topic."""

    def connect(self, **options):  # type: ignore[override]
        manager = super().connect(**options)

        class Broken:
            async def __aenter__(self) -> Any:
                session = await manager.__aenter__()
                original = session.unsubscribe

                async def unsubscribe(topic: str) -> None:
                    while session._counts.get(topic):  # type: ignore[attr-defined]
                        await original(topic)

                session.unsubscribe = unsubscribe  # type: ignore[method-assign]
                return session

            async def __aexit__(self, *exc: object) -> None:
                await manager.__aexit__(*exc)

        return Broken()


async def test_conformance_catches_a_broken_broker(autojump_clock):
    with pytest.raises(AssertionError, match="refcount: one subscription of two remains"):
        await check_broker(_NoRefcountBroker)


@pytest.mark.parametrize("name", sorted(broker_checks()))
async def test_each_check_is_usable_alone(name, autojump_clock):
    await broker_checks()[name](MemoryBroker)


# -- one broken broker per check ---------------------------------------------------------

Patch = Callable[["Broken", Any], None]


class Broken(MemoryBroker):
    """A memory broker whose sessions ``patch`` breaks as they open."""

    def __init__(self, patch: Patch) -> None:
        super().__init__()
        self.patch = patch
        self.sessions: list[Any] = []

    @asynccontextmanager
    async def connect(self, *, on_state: Any = None) -> AsyncIterator[BrokerSession]:
        async with super().connect(on_state=on_state) as session:
            self.sessions.append(session)
            self.patch(self, session)
            yield session


def deliver_twice(broker: Broken, session: Any) -> None:
    publish = session.publish

    async def twice(topic: str, data: bytes) -> None:
        await publish(topic, data)
        await publish(topic, data)

    session.publish = twice


def swap_pairs(broker: Broken, session: Any) -> None:
    publish, held = session.publish, []

    async def swapped(topic: str, data: bytes) -> None:
        if not held:
            held.append((topic, data))
            await trio.lowlevel.checkpoint()
            return
        await publish(topic, data)
        await publish(*held.pop())

    session.publish = swapped


def ignore_unsubscribe(broker: Broken, session: Any) -> None:
    async def unsubscribe_many(topics: Any) -> None:
        await trio.lowlevel.checkpoint()

    session.unsubscribe_many = unsubscribe_many


def forget_counts(broker: Broken, session: Any) -> None:
    """One unsubscribe drops every subscription to the topic."""
    unsubscribe_many = session.unsubscribe_many

    async def all_of_them(topics: Any) -> None:
        for topic in topics:
            while session._counts.get(topic):
                await unsubscribe_many([topic])

    session.unsubscribe_many = all_of_them


def subscribe_only_the_first(broker: Broken, session: Any) -> None:
    subscribe_many = session.subscribe_many

    async def first_only(topics: Any) -> None:
        await subscribe_many(list(topics)[:1])

    session.subscribe_many = first_only


def unrouted_to_everyone(broker: Broken, session: Any) -> None:
    """A message for a topic nobody subscribes goes to every session instead."""
    publish = session.publish

    async def publish_or_spray(topic: str, data: bytes) -> None:
        if broker._subscribers.get(topic):
            await publish(topic, data)
            return
        for each in broker.sessions:
            await each._send.send(BrokerMessage(topic, data))

    session.publish = publish_or_spray


def mangle_non_utf8(broker: Broken, session: Any) -> None:
    publish = session.publish

    async def as_text(topic: str, data: bytes) -> None:
        await publish(topic, data.decode("utf-8", "replace").encode())

    session.publish = as_text


def stay_open(broker: Broken, session: Any) -> None:
    session._check_open = lambda: None


def unbounded(broker: Broken, session: Any) -> None:
    session._send, session._receive = trio.open_memory_channel[BrokerMessage](math.inf)


# -- history ---------------------------------------------------------------------------


def claim_no_history(broker: Broken, session: Any) -> None:
    """Says it keeps no history, yet publish_kept and read_history work."""
    session.keeps_history = False


def skip_offsets(broker: Broken, session: Any) -> None:
    publish_kept = session.publish_kept

    async def twice(topic: str, data: bytes, history: History) -> Any:
        await publish_kept(topic, data, history)
        return await publish_kept(topic, data, history)

    session.publish_kept = twice


def deliver_without_position(broker: Broken, session: Any) -> None:
    deliver = session._deliver

    async def plain(message: BrokerMessage) -> None:
        await deliver(message._replace(position=None))

    session._deliver = plain


def ignore_limit(broker: Broken, session: Any) -> None:
    read_history = session.read_history

    async def everything(topic: str, history: History, **options: Any) -> HistoryPage:
        options.pop("limit", None)
        return await read_history(topic, history, **options)  # type: ignore[no-any-return]

    session.read_history = everything


def with_history(**changes: Any) -> Patch:
    """Keeps and reads with ``changes`` made to the History it is given."""

    def patch(broker: Broken, session: Any) -> None:
        publish_kept, read_history = session.publish_kept, session.read_history

        async def kept(topic: str, data: bytes, history: History) -> Any:
            return await publish_kept(topic, data, attrs.evolve(history, **changes))

        async def read(topic: str, history: History, **options: Any) -> Any:
            return await read_history(topic, attrs.evolve(history, **changes), **options)

        session.publish_kept, session.read_history = kept, read

    return patch


_READS = itertools.count()


def epoch_per_read(broker: Broken, session: Any) -> None:
    """A topic never published to gets a new epoch on every read."""
    read_history = session.read_history

    async def read(topic: str, history: History, **options: Any) -> HistoryPage:
        page: HistoryPage = await read_history(topic, history, **options)
        if page.position.offset == 0:
            return page._replace(position=page.position._replace(epoch=f"e{next(_READS)}"))
        return page

    session.read_history = read


def kept_overtakes_plain(broker: Broken, session: Any) -> None:
    """The first plain publish is held until the next kept one went out."""
    publish, publish_kept = session.publish, session.publish_kept
    held: list[tuple[str, bytes] | None] = []

    async def hold_first(topic: str, data: bytes) -> None:
        if not held:
            held.append((topic, data))
            await trio.lowlevel.checkpoint()
            return
        await publish(topic, data)

    async def kept_then_held(topic: str, data: bytes, history: History) -> Any:
        position = await publish_kept(topic, data, history)
        if held and (first := held[-1]) is not None:
            await publish(*first)
            held.append(None)
        return position

    session.publish, session.publish_kept = hold_first, kept_then_held


# -- presence --------------------------------------------------------------------------


def claim_no_presence(broker: Broken, session: Any) -> None:
    """Says it keeps no presence, yet every presence call works."""
    session.keeps_presence = False


def presence_per_session(broker: Broken, session: Any) -> None:
    """Each session keeps presence of its own: nobody else sees its entries."""
    shadow = type(session)(MemoryBroker())
    for name in ("add", "remove", "list", "heartbeat", "sweep"):
        setattr(session, f"presence_{name}", getattr(shadow, f"presence_{name}"))


def always_removed(broker: Broken, session: Any) -> None:
    remove = session.presence_remove

    async def removed(topic: str, member: str, node: str) -> bool:
        await remove(topic, member, node)
        return True

    session.presence_remove = removed


_ADDS = itertools.count()


def add_keeps_both(broker: Broken, session: Any) -> None:
    """Adding a member again adds a second entry instead of replacing the first."""
    add = session.presence_add

    async def another(topic: str, member: str, node: str, entry: bytes) -> None:
        await add(topic, f"{member}#{next(_ADDS)}", node, entry)

    session.presence_add = another


def list_known_nodes(broker: Broken, session: Any) -> None:
    """Lists the entries of every node that ever beat, however long ago."""

    async def listed(topic: str) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        present = broker._present.get(topic, {}).values()
        return [entry for node, entry, _ in present if node in broker._nodes]

    session.presence_list = listed


def sweep_without_removing(broker: Broken, session: Any) -> None:
    """Returns the entries of dead nodes but leaves them (and the nodes) there."""

    async def sweep() -> list[tuple[str, bytes]]:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        return [
            (topic, entry)
            for topic, members in broker._present.items()
            for node, entry, _ in members.values()
            if broker._nodes.get(node, now) <= now
        ]

    session.presence_sweep = sweep


def remember_nodes(broker: Broken, session: Any) -> None:
    """Says a node was alive if it ever beat, also after it was swept."""
    heartbeat = session.presence_heartbeat
    seen = broker.__dict__.setdefault("seen", set())

    async def beat(node: str, ttl: float) -> bool:
        await heartbeat(node, ttl)
        alive = node in seen
        seen.add(node)
        return alive

    session.presence_heartbeat = beat


def leave_from_the_caller(broker: Broken, session: Any) -> None:
    """Publishes an entry's leave after removing it, as a separate step: both
    concurrent sweepers find it still stored, and both publish it."""
    add, sweep = session.presence_add, session.presence_sweep
    leaves = broker.__dict__.setdefault("leaves", {})

    async def added(topic: str, member: str, node: str, entry: bytes, **events: Any) -> None:
        leaves[topic, entry] = events.get("leave")
        await add(topic, member, node, entry, join=events.get("join"))

    async def swept() -> list[tuple[str, bytes]]:
        removed = await sweep()
        await trio.sleep(0)  # the other sweeper runs meanwhile
        for topic, entry in removed:
            if (leave := leaves.get((topic, entry))) is not None:
                await session.publish(topic, leave)
        return removed

    session.presence_add, session.presence_sweep = added, swept


BREAKS: dict[str, tuple[Patch, str]] = {
    "fan_out": (deliver_twice, "fan-out delivers exactly once: expected nothing before"),
    "order": (swap_pairs, "messages arrived out of publish order"),
    "unsubscribe": (ignore_unsubscribe, "unsubscribe stops delivery: expected nothing before"),
    "refcount": (forget_counts, "one subscription of two remains: nothing arrived"),
    "many": (subscribe_only_the_first, "subscribe_many subscribes .*: nothing arrived"),
    "no_subscribers": (unrouted_to_everyone, "no subscriber, no delivery: expected nothing"),
    "payloads": (mangle_non_utf8, "payload changed"),
    "closed": (stay_open, "publish on a closed session did not raise BrokerClosed"),
    "bounded_backlog": (unbounded, "its buffer is not bounded"),
    "history_unsupported": (claim_no_history, "publish_kept on a session without history"),
    "history_offsets": (skip_offsets, "publish_kept numbered .* not 1 to 5 in one epoch"),
    "history_delivery": (deliver_without_position, "received positions .* not 1 to 40"),
    "history_reads": (ignore_limit, r"read_history\(since=3, limit=2\) returned offsets"),
    "history_size": (with_history(size=10), "size=5, read_history"),
    "history_ttl": (with_history(ttl=300.0), "after the ttl"),
    "history_first_read": (epoch_per_read, "read again"),
    "history_fifo": (kept_overtakes_plain, "plain and kept messages arrived out of publish order"),
    "presence_unsupported": (claim_no_presence, "presence_add on a session without presence"),
    "presence_shared": (presence_per_session, "the adding session listed .*, not"),
    "presence_remove_once": (always_removed, r"three times: \[True, True, True\]"),
    "presence_replace": (add_keeps_both, "after adding one member thrice"),
    "presence_expiry": (list_known_nodes, "after the ttl of a node, its own session listed"),
    "presence_sweep": (sweep_without_removing, "two concurrent sweeps both returned"),
    "presence_heartbeat": (remember_nodes, "after the node was swept said it was alive"),
    "presence_events": (leave_from_the_caller, "the leave of a removed entry: nothing arrived"),
}


def deliver_per_subscription(broker: Broken, session: Any) -> None:
    """A session subscribed to a topic twice receives each of its messages twice."""
    channel = session._send

    class PerSubscription:
        async def send(self, message: BrokerMessage) -> None:
            for _ in range(max(session._counts[message.topic], 1)):
                await channel.send(message)

        def close(self) -> None:
            channel.close()

    session._send = PerSubscription()


async def test_refcount_catches_a_delivery_per_subscription(autojump_clock: Any) -> None:
    with pytest.raises(AssertionError, match="a topic subscribed twice delivers once: expected"):
        await broker_checks()["refcount"](lambda: Broken(deliver_per_subscription))


def test_every_check_has_a_broken_broker_here() -> None:
    assert set(BREAKS) == set(broker_checks())


@pytest.mark.parametrize("name", sorted(BREAKS))
async def test_each_check_catches_the_broker_broken_its_way(name: str, autojump_clock: Any) -> None:
    patch, message = BREAKS[name]
    with pytest.raises(AssertionError, match=message):
        await broker_checks()[name](lambda: Broken(patch))
    await broker_checks()[name](lambda: Broken(lambda broker, session: None))  # unbroken: passes


def without_history(broker: Broken, session: Any) -> None:
    """A session as BrokerSession makes one that keeps no history."""
    session.keeps_history = False
    session.publish_kept = functools.partial(BrokerSession.publish_kept, session)
    session.read_history = functools.partial(BrokerSession.read_history, session)


async def test_a_broker_without_history_passes_the_history_checks(autojump_clock: Any) -> None:
    for name, check in broker_checks().items():
        if name.startswith("history_"):
            await check(lambda: Broken(without_history))


def without_presence(broker: Broken, session: Any) -> None:
    """A session as BrokerSession makes one that keeps no presence."""
    session.keeps_presence = False
    for name in ("add", "remove", "list", "heartbeat", "sweep"):
        method = getattr(BrokerSession, f"presence_{name}")
        setattr(session, f"presence_{name}", functools.partial(method, session))


async def test_a_broker_without_presence_passes_the_presence_checks(autojump_clock: Any) -> None:
    for name, check in broker_checks().items():
        if name.startswith("presence_"):
            await check(lambda: Broken(without_presence))


async def test_check_broker_lists_every_failing_check(autojump_clock: Any) -> None:
    with pytest.raises(AssertionError) as caught:
        await check_broker(lambda: Broken(stay_open))
    lines = str(caught.value).splitlines()
    assert lines[0] == "broker conformance failed:"
    assert [line.split(":")[0] for line in lines[1:]] == ["closed"]


async def test_a_factory_must_make_a_broker(autojump_clock: Any) -> None:
    with pytest.raises(AssertionError, match="make_broker returned 42, not a Broker"):
        await broker_checks()["fan_out"](lambda: 42)  # type: ignore[arg-type,return-value]

    async def made_later() -> MemoryBroker:
        await trio.lowlevel.checkpoint()
        return MemoryBroker()

    await broker_checks()["fan_out"](made_later)  # an awaitable of a broker will do


async def test_a_broker_instead_of_a_factory_says_what_to_pass(autojump_clock: Any) -> None:
    """Calling the broker raised "'MemoryBroker' object is not callable"."""
    with pytest.raises(TypeError, match="take a function that makes a broker, not a broker"):
        await check_broker(MemoryBroker())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"e\.g\. lambda: MyBroker\(\.\.\.\)"):
        await broker_checks()["order"](MemoryBroker())  # type: ignore[arg-type]


async def test_a_hanging_broker_fails_its_check_at_the_deadline(autojump_clock: Any) -> None:
    def hang_on_publish(broker: Broken, session: Any) -> None:
        async def publish(topic: str, data: bytes) -> None:
            await trio.sleep_forever()

        session.publish = publish

    with pytest.raises(AssertionError, match=r"did not finish within 120 s \(a broker hang\?\)"):
        await broker_checks()["no_subscribers"](lambda: Broken(hang_on_publish))
