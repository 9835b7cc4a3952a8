"""The supervisor behind a Redis session (``wsroute.brokers.redis.supervisor``): its
reconnection backoff, and Redis unreachable at start, killed and restarted, gone for
good. Against real redis-server processes; real time throughout (real sockets), every
wait bounded.
"""

from __future__ import annotations

import pytest
import trio

from wsroute import BrokerClosed, BrokerError
from wsroute.brokers import BrokerMessage, BrokerState, RedisBroker
from wsroute.brokers.redis.supervisor import BACKOFF_BASE, BACKOFF_CAP, _Backoff

from .redisproc import RedisServer, free_port, own_redis_server, running_server
from .redistools import TIMEOUT, States, next_message, quick

__all__ = ["own_redis_server"]  # a fixture, imported to be found


def test_reconnection_delays_double_up_to_the_cap_with_jitter() -> None:
    backoff = _Backoff()
    for attempt in range(20):
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
        assert delay / 2 <= backoff.next() <= delay, attempt
    backoff.reset()
    assert BACKOFF_BASE / 2 <= backoff.next() <= BACKOFF_BASE


# -- supervision ------------------------------------------------------------------------


async def test_unreachable_at_start_fails_fast() -> None:
    port = free_port()
    start = trio.current_time()
    with trio.fail_after(TIMEOUT), pytest.raises(BrokerError) as info:
        async with RedisBroker(f"redis://127.0.0.1:{port}").connect():
            pass
    assert trio.current_time() - start < 2
    assert str(info.value) == (
        f"cannot connect to Redis at redis://127.0.0.1:{port}/0: Unable to establish a"
        f" connection to 127.0.0.1:{port}: Connection refused"
    )


async def test_start_timeout_waits_for_redis_to_come_up(nursery: trio.Nursery) -> None:
    with running_server() as probe:
        binary = probe.binary
    server = RedisServer(binary)
    # Until Redis starts, its port is held by a listener that hangs up on whoever
    # connects: the broker's first try fails for certain, and Redis starts right
    # after (no guess at how long the broker takes to try).
    listeners = await trio.open_tcp_listeners(server.port, host="127.0.0.1")
    try:

        async def start_after_the_first_try() -> None:
            stream = await listeners[0].accept()
            await stream.aclose()
            await listeners[0].aclose()
            await server.astart()

        nursery.start_soon(start_after_the_first_try)
        async with RedisBroker(server.url, start_timeout=TIMEOUT).connect() as session:
            await session.subscribe("t")
            await session.publish("t", b"late but fine")
            assert await next_message(session) == BrokerMessage("t", b"late but fine")
    finally:
        for listener in listeners:
            await listener.aclose()
        server.close()


async def test_killed_redis_is_reported_and_recovered_with_every_topic(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    states = States()
    async with quick(server.url).connect(on_state=states) as session:
        for topic in ("a", "b"):
            await session.subscribe(topic)
        server.kill()
        await states.wait_for(BrokerState.DISCONNECTED)
        with trio.fail_after(0.1), pytest.raises(BrokerError, match="unreachable"):
            await session.publish("a", b"lost")  # fails at once: known to be down
        await session.subscribe("c")  # recorded while down, subscribed on return
        await session.unsubscribe("b")
        await server.astart()
        back = trio.current_time()
        await states.wait_for(BrokerState.CONNECTED)
        assert trio.current_time() - back < TIMEOUT
        assert states.seen == [BrokerState.DISCONNECTED, BrokerState.CONNECTED]
        assert await server.numsub("wsroute:a", "wsroute:b", "wsroute:c") == {
            "wsroute:a": 1,
            "wsroute:b": 0,
            "wsroute:c": 1,
        }
        await session.publish("c", b"back")
        assert await next_message(session) == BrokerMessage("c", b"back")


async def test_gives_up_after_give_up_after(own_redis_server: RedisServer) -> None:
    server = own_redis_server
    states = States()
    with pytest.raises(BrokerError, match=r"could not reconnect within 0\.5 s") as info:
        with trio.fail_after(TIMEOUT):
            async with quick(server.url, give_up_after=0.5).connect(on_state=states) as session:
                await session.subscribe("t")
                server.kill()
                lost = trio.current_time()
                await trio.sleep_forever()
    assert 0.5 <= trio.current_time() - lost < 2
    assert "Connection refused" in str(info.value)
    assert states.seen == [BrokerState.DISCONNECTED]
    with pytest.raises(BrokerClosed):
        await session.publish("t", b"too late")
