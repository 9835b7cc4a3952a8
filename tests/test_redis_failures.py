"""How a Redis failure reads in the logs (``wsroute.brokers.redis.failures``)."""

from __future__ import annotations

import errno

from coredis.exceptions import ConnectionError as RedisConnectionError

from wsroute.brokers.redis.failures import explain


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
