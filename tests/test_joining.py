"""Joining topics (``wsroute._server.joining``): joins that meet a broker subscription
on its way wait for it, take over when it fails, and give up after repeated failures."""

from __future__ import annotations

import trio
import trio.testing

from wsroute import BrokerError, Connection
from wsroute._protocol import encode_event
from wsroute._server.hub import Hub
from wsroute.brokers import MemoryBroker

from .test_hub import connection, texts


class GatedSession:
    """A real memory broker session whose ``subscribe_many`` waits at a gate and then
    refuses (``refuse``) or goes through: another join comes in meanwhile."""

    def __init__(self, session: object) -> None:
        self._session = session
        self.gate = trio.Event()
        self.refuse = 0  # how many subscribe_many calls to refuse
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)

    def __aiter__(self) -> object:
        return self._session.__aiter__()  # type: ignore[attr-defined]

    async def subscribe_many(self, topics: list[str]) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.refuse:
            self.refuse -= 1
            raise BrokerError("refused by the test")
        await self._session.subscribe_many(topics)  # type: ignore[attr-defined]


async def hears(hub: Hub, conn: Connection, session: object, topic: str) -> bool:
    """Whether ``conn`` receives what is published to ``topic`` through the broker."""
    await session.publish(topic, encode_event("x", topic, 1))  # type: ignore[attr-defined]
    await trio.testing.wait_all_tasks_blocked()
    return bool(texts(conn))


async def test_a_join_waits_for_the_subscription_another_join_started(autojump_clock):
    async with MemoryBroker().connect() as session, trio.open_nursery() as nursery:
        gated = GatedSession(session)
        hub = Hub(gated)  # type: ignore[arg-type]
        nursery.start_soon(hub.pump)
        a, b = connection(hub), connection(hub)
        nursery.start_soon(a.subscribe, "room")
        await trio.testing.wait_all_tasks_blocked()
        joined = trio.Event()

        async def join_b() -> None:
            await b.subscribe("room")
            joined.set()

        nursery.start_soon(join_b)
        await trio.testing.wait_all_tasks_blocked()
        assert not joined.is_set()  # not before the broker delivers the topic
        gated.gate.set()
        await joined.wait()
        assert gated.calls == 1 and await hears(hub, b, session, "room")
        nursery.cancel_scope.cancel()


async def test_when_the_first_subscription_fails_the_next_joiner_subscribes(autojump_clock):
    async with MemoryBroker().connect() as session, trio.open_nursery() as nursery:
        gated = GatedSession(session)
        gated.refuse = 1
        hub = Hub(gated)  # type: ignore[arg-type]
        nursery.start_soon(hub.pump)
        a, b = connection(hub), connection(hub)
        failed: list[BaseException] = []

        async def join_a() -> None:
            try:
                await a.subscribe("room")
            except BrokerError as exc:
                failed.append(exc)

        nursery.start_soon(join_a)
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as joining:
            joining.start_soon(b.subscribe, "room")
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()
        # a was refused and joined nothing; b, which came meanwhile, took over: it is
        # subscribed on the broker and hears the topic, rather than being deaf.
        assert len(failed) == 1 and a.topics == frozenset() and b.topics == {"room"}
        assert gated.calls == 2 and session._counts["room"] == 1  # type: ignore[attr-defined]
        assert await hears(hub, b, session, "room")
        assert not hub._subscribing
        nursery.cancel_scope.cancel()


async def test_a_cancelled_first_join_does_not_leave_the_next_deaf(autojump_clock):
    async with MemoryBroker().connect() as session, trio.open_nursery() as nursery:
        gated = GatedSession(session)
        hub = Hub(gated)  # type: ignore[arg-type]
        nursery.start_soon(hub.pump)
        a, b = connection(hub), connection(hub)
        async with trio.open_nursery() as joining:
            scope = trio.CancelScope()

            async def join_a() -> None:
                with scope:
                    await a.subscribe("room")

            joining.start_soon(join_a)
            await trio.testing.wait_all_tasks_blocked()
            joining.start_soon(b.subscribe, "room")
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()  # a's connection ends while its subscription is on its way
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()
        assert a.topics == frozenset() and b.topics == {"room"}
        assert session._counts["room"] == 1  # type: ignore[attr-defined]
        assert await hears(hub, b, session, "room")
        nursery.cancel_scope.cancel()


async def test_a_join_gives_up_after_repeated_failures_of_others(autojump_clock):
    async with MemoryBroker().connect() as session, trio.open_nursery() as nursery:
        gated = GatedSession(session)
        gated.refuse = 99
        gated.gate.set()
        hub = Hub(gated)  # type: ignore[arg-type]
        conns = [connection(hub) for _ in range(3)]
        outcomes: list[str] = []

        async def join(conn: Connection) -> None:
            try:
                await conn.subscribe("room")
                outcomes.append("joined")
            except BrokerError:
                outcomes.append("refused")

        for conn in conns:
            nursery.start_soon(join, conn)
        await trio.testing.wait_all_tasks_blocked()
        # Each tried itself once the one before failed; none is left a member.
        assert outcomes == ["refused"] * 3
        assert all(conn.topics == frozenset() for conn in conns)
        assert not hub._members and not hub._subscribing
        assert "room" not in session._counts  # type: ignore[attr-defined]
