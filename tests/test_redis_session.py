"""The Redis broker's session (``wsroute.brokers.redis.session``): refcounted topics in
one SUBSCRIBE and the consumer's bounded backlog. Its supervisor (reconnecting) has its
own module: tests/test_redis_supervisor.py. Against real redis-server processes; real
time throughout (real sockets), every wait bounded.
"""

from __future__ import annotations

import logging

import pytest

from wsroute.brokers import BrokerMessage, RedisBroker
from wsroute.brokers.redis import RedisSession

from .redisproc import RedisServer, own_redis_server, redis_server
from .redistools import next_message, wait_until

__all__ = ["own_redis_server", "redis_server"]  # fixtures, imported to be found

# -- topics and the consumer's backlog ---------------------------------------------------


async def test_a_full_backlog_drops_counts_and_logs(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisBroker(redis_server.url, backlog=10)
    async with broker.connect() as publisher, broker.connect() as subscriber:
        assert isinstance(subscriber, RedisSession)
        await subscriber.subscribe("t")
        for n in range(100):
            await publisher.publish("t", b"%d" % n)

        async def all_dropped() -> bool:
            return subscriber.dropped == 90

        await wait_until(all_dropped, "the messages beyond the backlog are dropped")
        assert [(await next_message(subscriber)).data for _ in range(10)] == [
            b"%d" % n for n in range(10)
        ]
        await publisher.publish("t", b"after")  # drained: delivery resumes
        assert await next_message(subscriber) == BrokerMessage("t", b"after")
    drops = [r for r in caplog.records if "dropping messages" in r.getMessage()]
    assert len(drops) == 1 and drops[0].levelno == logging.ERROR


async def test_subscribe_many_sends_one_subscribe_for_the_new_topics(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    async with server.client() as client, RedisBroker(server.url).connect() as session:
        assert isinstance(session, RedisSession) and session.connected
        await client.config_resetstat()
        await session.subscribe_many(["a", "b", "c"])
        await session.subscribe_many(["a", "b"])  # only counted: nothing new to subscribe
        await session.subscribe_many(["a", "d"])
        stats = await client.info("commandstats")
        assert stats["cmdstat_subscribe"]["calls"] == 2
        assert await server.numsub("wsroute:a", "wsroute:d") == {"wsroute:a": 1, "wsroute:d": 1}
        await session.unsubscribe_many(["a", "a"])
        await session.publish("a", b"still one subscription left")
        assert await next_message(session) == BrokerMessage("a", b"still one subscription left")
    assert not session.connected
