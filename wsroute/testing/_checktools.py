"""What the broker conformance checks share: the broker they are given, fresh topic
names, and receiving that fails (rather than hangs) when nothing comes."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from .._history import History
from ..brokers import Broker, BrokerMessage, BrokerSession

BrokerFactory = Callable[[], Broker | Awaitable[Broker]]
Check = Callable[[BrokerFactory], Awaitable[None]]

#: Seconds one expected message may take to arrive.
TIMEOUT: Final = 5.0
#: Seconds of silence taken to mean "nothing more is coming".
QUIET: Final = 0.5
#: The history of most history checks: room for all they publish, no expiry meanwhile.
KEEP: Final = History(size=100, ttl=300)


async def make(make_broker: BrokerFactory) -> Broker:
    """The broker ``make_broker`` makes (it may return an awaitable of one).

    Raises:
        TypeError: ``make_broker`` is a broker, not a function that makes one.
    """
    if isinstance(make_broker, Broker):
        raise TypeError(
            f"the broker checks take a function that makes a broker, not a broker"
            f" ({make_broker!r}): each check needs its own, e.g. lambda: MyBroker(...)"
        )
    broker = make_broker()
    if inspect.isawaitable(broker):
        broker = await broker
    assert isinstance(broker, Broker), f"make_broker returned {broker!r}, not a Broker"
    return broker


def fresh_topics(*names: str) -> list[str]:
    """Topic names no other run uses, so that checks may share a broker server."""
    token = secrets.token_hex(4)
    return [f"wsroute-check-{token}-{name}" for name in names]


async def receive(session: BrokerSession, what: str) -> BrokerMessage:
    """The session's next message; fails the check, saying ``what``, if none comes."""
    with trio.move_on_after(TIMEOUT):
        try:
            return await session.__anext__()
        except StopAsyncIteration:
            raise AssertionError(f"{what}: the session's iteration ended") from None
    raise AssertionError(f"{what}: nothing arrived within {TIMEOUT:g} s")


async def receive_all(session: BrokerSession, count: int, into: list[BrokerMessage]) -> None:
    """Receive ``count`` messages into ``into``: a task beside the publishers, since a
    broker may make them wait until its subscribers read."""
    for i in range(count):
        into.append(await receive(session, f"message {i + 1} of {count}"))


async def expect_only_sentinel(
    publisher: BrokerSession, subscriber: BrokerSession, sentinel: str, what: str
) -> None:
    """Prove that ``subscriber`` has nothing more to receive, without waiting for
    silence: ``publisher`` publishes on the topic ``sentinel`` (which ``subscriber``
    subscribes to), and, by per-publisher order, that must come next."""
    await publisher.publish(sentinel, b"sentinel")
    message = await receive(subscriber, what)
    assert message == BrokerMessage(sentinel, b"sentinel"), (
        f"{what}: expected nothing before the sentinel, got {message!r}"
    )
    if not subscriber.orders_across_topics:
        # The sentinel may overtake a message on another shard: wait for stragglers.
        with trio.move_on_after(QUIET):
            late = await subscriber.__anext__()
            raise AssertionError(f"{what}: expected nothing, got {late!r} after the sentinel")
