"""How a Redis failure reads in the logs (``wsroute.brokers.redis.failures``)."""

from __future__ import annotations

import errno

import pytest
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError

from wsroute import BrokerError
from wsroute.brokers import RedisBroker
from wsroute.brokers.redis.failures import explain

from .redisproc import running_server
from .redistools import TIMEOUT


def test_explain_adds_the_root_cause() -> None:
    refused = RedisConnectionError("Unable to connect to 127.0.0.1:1")
    refused.__cause__ = OSError(errno.ECONNREFUSED, "[Errno 111] Connect call failed")
    assert explain(refused) == "Unable to connect to 127.0.0.1:1: Connection refused"
    deep = RuntimeError("outer")
    deep.__cause__ = ValueError("middle")
    deep.__cause__.__cause__ = KeyError("root")
    assert explain(deep) == "outer: 'root'"
    silent = RuntimeError()
    silent.__cause__ = TimeoutError()
    assert explain(silent) == "RuntimeError: TimeoutError"
    assert explain(ValueError("alone")) == "alone"


async def test_a_url_without_the_password_redis_requires_says_so() -> None:
    """Redis's own answer is about HELLO and AUTH, which a user of a URL never sees."""
    with running_server(["--requirepass", "s3cret"]) as server:
        without = "cannot connect .*: Redis requires a password, and the URL gives none"
        with trio.fail_after(TIMEOUT), pytest.raises(BrokerError, match=without):
            async with RedisBroker(f"redis://127.0.0.1:{server.port}").connect():
                pass
        with trio.fail_after(TIMEOUT), pytest.raises(BrokerError) as wrong:
            async with RedisBroker(f"redis://:wrong@127.0.0.1:{server.port}").connect():
                pass
        assert "requires a password" not in str(wrong.value)  # given, just wrong
