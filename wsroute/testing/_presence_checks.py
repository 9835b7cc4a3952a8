"""The presence part of the broker contract: what the ``presence_*`` methods promise
(``BrokerSession``), checked on sessions that say ``keeps_presence``; against the
others, only that they refuse.

Nodes beat with a ttl of 300 s while a check needs them alive, and once more with
0.2 s when it needs one dead: the check then waits 0.3 s, a jump under
``autojump_clock``, a real wait against a networked broker (whose clock cannot be
jumped). Node names are fresh like topics, and what a sweep returns is looked at only
for the check's own topics, so the checks may share a broker server with others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from .._errors import PresenceUnsupported
from ..brokers import BrokerMessage, BrokerSession
from ._checktools import QUIET, BrokerFactory, fresh_topics, make, receive

#: The ttl of a node that must stay alive throughout a check.
ALIVE: Final = 300.0
#: The ttl of a node that must die, and the seconds waited for it to.
BRIEF: Final = 0.2
OUTLIVE: Final = 0.3


async def _listed(session: BrokerSession, topic: str) -> list[bytes]:
    return sorted(await session.presence_list(topic))


async def _die(session: BrokerSession, node: str) -> None:
    """Shorten ``node``'s heartbeat to ``BRIEF`` and wait until it ended."""
    await session.presence_heartbeat(node, BRIEF)
    await trio.sleep(OUTLIVE)


async def check_presence_unsupported(make_broker: BrokerFactory) -> None:
    """A session that keeps no presence says so: every presence call raises
    PresenceUnsupported (nothing to check on a session that keeps it)."""
    broker = await make(make_broker)
    topic, node = fresh_topics("unsupported", "node")
    async with broker.connect() as session:
        if session.keeps_presence:
            return
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("presence_add", lambda: session.presence_add(topic, "m", node, b"x")),
            ("presence_remove", lambda: session.presence_remove(topic, "m", node)),
            ("presence_list", lambda: session.presence_list(topic)),
            ("presence_heartbeat", lambda: session.presence_heartbeat(node, ALIVE)),
            ("presence_sweep", session.presence_sweep),
        ]
        for name, call in calls:
            try:
                await call()
            except PresenceUnsupported:
                continue
            raise AssertionError(f"{name} on a session without presence did not raise")


async def check_presence_shared(make_broker: BrokerFactory) -> None:
    """Entries added and removed by one session are listed by every session, and
    only on their own topic."""
    broker = await make(make_broker)
    topic, other, node_a, node_b = fresh_topics("shared", "other", "node-a", "node-b")
    async with broker.connect() as one, broker.connect() as two:
        if not one.keeps_presence:
            return
        await one.presence_heartbeat(node_a, ALIVE)
        await two.presence_heartbeat(node_b, ALIVE)
        await one.presence_add(topic, "a1", node_a, b"entry a1")
        await one.presence_add(topic, "a2", node_a, b"entry a2")
        await two.presence_add(topic, "b1", node_b, b"entry b1")
        everyone = [b"entry a1", b"entry a2", b"entry b1"]
        for name, session in (("the adding session", one), ("another session", two)):
            listed = await _listed(session, topic)
            assert listed == everyone, f"{name} listed {listed}, not {everyone}"
        assert await one.presence_list(other) == [], "an entry was listed on another topic"
        assert await two.presence_remove(topic, "b1", node_b), "removing b1 returned False"
        assert await one.presence_remove(topic, "a1", node_a), "removing a1 returned False"
        for name, session in (("the removing session", two), ("another session", one)):
            listed = await _listed(session, topic)
            assert listed == [b"entry a2"], f"after removals, {name} listed {listed}"


async def check_presence_remove_once(make_broker: BrokerFactory) -> None:
    """``presence_remove`` says True once for an entry there, then False; False for a
    member never added and on a topic nobody joined."""
    broker = await make(make_broker)
    topic, empty, node = fresh_topics("remove", "empty", "node")
    async with broker.connect() as one, broker.connect() as two:
        if not one.keeps_presence:
            return
        await one.presence_heartbeat(node, ALIVE)
        await one.presence_add(topic, "m", node, b"entry")
        await one.presence_add(topic, "stays", node, b"stays")
        removals = [await session.presence_remove(topic, "m", node) for session in (one, two, one)]
        assert removals == [True, False, False], f"removing one entry three times: {removals}"
        assert not await one.presence_remove(topic, "never", node), "a member never added"
        assert not await one.presence_remove(empty, "m", node), "a topic nobody joined"
        assert await one.presence_list(topic) == [b"stays"], "removal took another entry"


async def check_presence_replace(make_broker: BrokerFactory) -> None:
    """Adding a member's entry again replaces it: one entry, the newest, which one
    removal takes."""
    broker = await make(make_broker)
    topic, node = fresh_topics("replace", "node")
    async with broker.connect() as session:
        if not session.keeps_presence:
            return
        await session.presence_heartbeat(node, ALIVE)
        for entry in (b"first", b"second", b"third"):
            await session.presence_add(topic, "m", node, entry)
        listed = await session.presence_list(topic)
        assert listed == [b"third"], f"after adding one member thrice, listed {listed}"
        assert await session.presence_remove(topic, "m", node), "removal returned False"
        listed = await session.presence_list(topic)
        assert listed == [], f"after one removal of a replaced entry, listed {listed}"


async def check_presence_expiry(make_broker: BrokerFactory) -> None:
    """Only entries of nodes whose heartbeat has not ended are listed: not those of a
    node whose ttl passed, nor of one that never beat."""
    broker = await make(make_broker)
    topic, dying, living, silent = fresh_topics("expiry", "dying", "living", "silent")
    async with broker.connect() as one, broker.connect() as two:
        if not one.keeps_presence:
            return
        await one.presence_heartbeat(dying, ALIVE)
        await two.presence_heartbeat(living, ALIVE)
        await one.presence_add(topic, "d", dying, b"dying")
        await two.presence_add(topic, "l", living, b"living")
        await two.presence_add(topic, "s", silent, b"never beat")
        listed = await _listed(one, topic)
        assert listed == [b"dying", b"living"], f"with both nodes alive, listed {listed}"
        await _die(one, dying)
        for name, session in (("its own session", one), ("another session", two)):
            listed = await _listed(session, topic)
            assert listed == [b"living"], f"after the ttl of a node, {name} listed {listed}"


async def check_presence_sweep(make_broker: BrokerFactory) -> None:
    """A sweep removes and returns the entries of nodes whose heartbeat ended, each to
    exactly one of two sessions sweeping at once, and nothing of live nodes."""
    broker = await make(make_broker)
    first, second, dying, living = fresh_topics("sweep-1", "sweep-2", "dying", "living")
    ours = {first, second}
    async with broker.connect() as one, broker.connect() as two, broker.connect() as three:
        if not one.keeps_presence:
            return
        await one.presence_heartbeat(dying, ALIVE)
        await two.presence_heartbeat(living, ALIVE)
        doomed = [(first, b"d1"), (first, b"d2"), (second, b"d3")]
        for n, (topic, entry) in enumerate(doomed):
            await one.presence_add(topic, f"d{n}", dying, entry)
        await two.presence_add(first, "l", living, b"l1")
        early = [swept for swept in await three.presence_sweep() if swept[0] in ours]
        assert early == [], f"a sweep while every node lived returned {early}"
        await _die(one, dying)
        swept: dict[str, list[tuple[str, bytes]]] = {}

        async def sweep(name: str, session: BrokerSession) -> None:
            swept[name] = [item for item in await session.presence_sweep() if item[0] in ours]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sweep, "two", two)
            nursery.start_soon(sweep, "three", three)
        both = Counter(swept["two"] + swept["three"])
        twice = sorted(item for item, count in both.items() if count > 1)
        assert not twice, f"two concurrent sweeps both returned {twice}"
        assert sorted(both) == sorted(doomed), (
            f"concurrent sweeps returned {sorted(both)}, not the dead node's {sorted(doomed)}"
        )
        later = [item for item in await two.presence_sweep() if item[0] in ours]
        assert later == [], f"a later sweep returned {later} again"
        assert await _listed(three, first) == [b"l1"], "the sweep took a live node's entry"
        assert not await one.presence_remove(first, "d0", dying), "a swept entry was removed"


async def check_presence_heartbeat(make_broker: BrokerFactory) -> None:
    """``presence_heartbeat`` says False on a node's first beat, True while it beats
    in time, and False again after its entries were swept; they stay gone."""
    broker = await make(make_broker)
    topic, node = fresh_topics("heartbeat", "node")
    async with broker.connect() as session, broker.connect() as sweeper:
        if not session.keeps_presence:
            return
        beats = [await session.presence_heartbeat(node, ALIVE) for _ in range(3)]
        assert beats == [False, True, True], f"the first three beats said {beats}"
        await session.presence_add(topic, "m", node, b"entry")
        await _die(session, node)
        await sweeper.presence_sweep()
        assert not await session.presence_heartbeat(node, ALIVE), (
            "the first beat after the node was swept said it was alive"
        )
        listed = await session.presence_list(topic)
        assert listed == [], f"after being swept and beating again, the node has {listed}"
        assert await session.presence_heartbeat(node, ALIVE), "the next beat said False"


async def _expect_nothing_more(
    subscriber: BrokerSession, publishers: list[BrokerSession], sentinel: str, what: str
) -> None:
    """Nothing more reaches ``subscriber`` from ``publishers``: each publishes on
    ``sentinel`` (which ``subscriber`` subscribes to), and by per-publisher order
    only those sentinels may come next."""
    expected = [b"sentinel %d" % n for n in range(len(publishers))]
    for publisher, data in zip(publishers, expected, strict=True):
        await publisher.publish(sentinel, data)
    for _ in expected:
        message = await receive(subscriber, what)
        assert message.topic == sentinel and message.data in expected, (
            f"{what}: expected nothing more, got {message!r}"
        )
    if not subscriber.orders_across_topics:
        # A sentinel may overtake a message on another shard: wait for stragglers.
        with trio.move_on_after(QUIET):
            late = await subscriber.__anext__()
            raise AssertionError(f"{what}: expected nothing more, got {late!r}")


async def check_presence_events(make_broker: BrokerFactory) -> None:
    """A session that ``publishes_presence_events`` publishes, to the topic's
    subscribers, the join given with a new entry (not with a replacement), and the
    leave kept with an entry exactly once: with the removal that returns True, or with
    the sweep that removes it, of two sweeping at once. An entry given none has none;
    a payload that looks like a kept event arrives as given."""
    broker = await make(make_broker)
    topic, other, sentinel, node, dying = fresh_topics(
        "events", "events-2", "sentinel", "node", "dying"
    )
    async with (
        broker.connect() as one,
        broker.connect() as two,
        broker.connect() as three,
        broker.connect() as watcher,
    ):
        if not (one.keeps_presence and one.publishes_presence_events):
            return
        await watcher.subscribe_many([topic, other, sentinel])
        await one.presence_heartbeat(node, ALIVE)
        await one.presence_add(topic, "m", node, b"m", join=b"join m", leave=b"leave m")
        message = await receive(watcher, "the join of a new entry")
        assert message == BrokerMessage(topic, b"join m"), f"the join arrived as {message!r}"
        # Replaced: no join, and the new leave instead of the first.
        await one.presence_add(topic, "m", node, b"m2", join=b"join again", leave=b"\x04m2")
        await one.presence_add(topic, "quiet", node, b"quiet")
        removals = [await session.presence_remove(topic, "m", node) for session in (two, three)]
        assert removals == [True, False], f"removing one entry twice: {removals}"
        message = await receive(watcher, "the leave of a removed entry")
        assert message == BrokerMessage(topic, b"\x04m2"), f"the leave arrived as {message!r}"
        assert await three.presence_remove(topic, "quiet", node), "removing quiet said False"
        await _expect_nothing_more(watcher, [one, two, three], sentinel, "after removals")

        await one.presence_heartbeat(dying, ALIVE)
        doomed = [BrokerMessage(topic, b"leave d1"), BrokerMessage(topic, b"leave d2")]
        doomed.append(BrokerMessage(other, b"leave d3"))
        for n, message in enumerate(doomed):
            leave = message.data
            await one.presence_add(message.topic, f"d{n}", dying, b"d", join=b"join", leave=leave)
        await one.presence_add(other, "silent", dying, b"silent")
        joins = [await receive(watcher, f"join {n + 1}") for n in range(len(doomed))]
        assert sorted(m.topic for m in joins) == sorted(m.topic for m in doomed), joins
        await _die(one, dying)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(two.presence_sweep)
            nursery.start_soon(three.presence_sweep)
        leaves = [await receive(watcher, f"swept leave {n + 1}") for n in range(len(doomed))]
        assert sorted(leaves) == sorted(doomed), f"two sweeps published {leaves}"
        await _expect_nothing_more(watcher, [two, three], sentinel, "after two sweeps")
