"""A process whose presence keeper dies right after the broker's step, for the
presence tests of each broker (memory, one Redis, a Redis Cluster): its leave events
must reach the topic's subscribers all the same, once each (issue #20).

"Dies right after the step" is a keeper whose session raises ``Died`` on its next
publish: what a process would do after the broker answered never happens. A keeper
that publishes the events itself, after the step, loses them so.
"""

from __future__ import annotations

import contextlib

import trio

from wsroute import Presence
from wsroute._presence import decode_entry, encode_entry
from wsroute._protocol import encode_event
from wsroute._server.presence import LEAVE_TYPE, PresenceKeeper
from wsroute._topics import TopicRules
from wsroute.brokers import Broker, BrokerMessage, BrokerSession

#: Seconds one expected event may take to arrive.
TIMEOUT = 5.0
TOPIC = "room:1"
RULES = TopicRules({"room:*": Presence(events=True)})


class Died(Exception):
    """The process died: nothing more it would send goes out."""


def dies_on_publish(session: BrokerSession) -> None:
    async def publish(topic: str, data: bytes) -> None:
        raise Died(f"the process died before publishing on {topic!r}")

    session.publish = publish  # type: ignore[method-assign]


def leave_of(member: str) -> BrokerMessage:
    entry = decode_entry(encode_entry(member, "ann", None))
    return BrokerMessage(TOPIC, encode_event(LEAVE_TYPE, TOPIC, entry))


async def next_event(watcher: BrokerSession, what: str, timeout: float = TIMEOUT) -> BrokerMessage:
    with trio.move_on_after(timeout):
        return await watcher.__anext__()
    raise AssertionError(f"{what}: nothing arrived within {timeout:g} s")


async def expect_nothing_more(watcher: BrokerSession, publishers: list[BrokerSession]) -> None:
    """Each of ``publishers`` publishes a sentinel on the topic: by per-topic order,
    only they may come next (no second leave)."""
    sentinels = [b"sentinel %d" % n for n in range(len(publishers))]
    for session, sentinel in zip(publishers, sentinels, strict=True):
        await type(session).publish(session, TOPIC, sentinel)  # also a "dead" one's
    received = [(await next_event(watcher, "a sentinel")).data for _ in sentinels]
    assert sorted(received) == sentinels, f"expected only the sentinels, got {received}"


async def leave_outlives_the_remover(broker: Broker) -> None:
    """A keeper removes its member's entry and dies before it could publish."""
    async with broker.connect() as watcher, broker.connect() as session:
        await watcher.subscribe(TOPIC)
        keeper = PresenceKeeper(session, RULES, 300.0)
        await session.presence_heartbeat(keeper.node, 300.0)  # as its run() starts
        await keeper.add(TOPIC, "c1", encode_entry("c1", "ann", None))
        joined = await next_event(watcher, "the join")
        assert joined.data.startswith(b'{"type":"wsroute.join"'), joined
        dies_on_publish(session)
        with contextlib.suppress(Died):
            await keeper.remove(TOPIC, "c1")
        assert await next_event(watcher, "the leave") == leave_of("c1")
        await expect_nothing_more(watcher, [session])


async def leave_outlives_the_sweeper(broker: Broker, ttl: float) -> None:
    """A keeper dies with its member's entry (kill -9: no clean-up); another sweeps
    it and dies before it could publish."""
    async with (
        broker.connect() as watcher,
        broker.connect() as dead,
        broker.connect() as sweeping,
    ):
        await watcher.subscribe(TOPIC)
        gone = PresenceKeeper(dead, RULES, ttl)
        await dead.presence_heartbeat(gone.node, ttl)
        await gone.add(TOPIC, "c2", encode_entry("c2", "ann", None))
        await next_event(watcher, "the join")
        await trio.sleep(ttl)  # ``gone`` beats no more: its node expired
        dies_on_publish(sweeping)
        sweeper = PresenceKeeper(sweeping, RULES, ttl)
        left: list[BrokerMessage] = []
        try:
            with trio.move_on_after(ttl + TIMEOUT):
                async with trio.open_nursery() as nursery:
                    await nursery.start(sweeper.run)  # sweeps a third of ttl later
                    left.append(await next_event(watcher, "the swept leave", ttl + TIMEOUT))
                    nursery.cancel_scope.cancel()
        except* Died:
            pass
        assert left == [leave_of("c2")], f"the watcher heard {left}"
        assert await sweeping.presence_list(TOPIC) == []
        await expect_nothing_more(watcher, [sweeping, dead])
