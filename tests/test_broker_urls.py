"""Brokers by URL (``wsroute.brokers._urls``): ``from_url`` picks the broker a URL names,
and every refusal is a ``ValueError`` that says what is accepted."""

from __future__ import annotations

import pytest

from wsroute.brokers import MemoryBroker, RedisBroker, from_url
from wsroute.brokers import redis as redis_broker


def test_from_url_memory() -> None:
    broker = from_url("memory://")
    assert isinstance(broker, MemoryBroker)
    assert from_url("memory://") is not broker


@pytest.mark.parametrize("url", ["memory://?backlog=5", "memory://localhost", "memory:///x"])
def test_from_url_memory_refuses_what_it_would_ignore(url: str) -> None:
    with pytest.raises(ValueError, match="memory broker takes no host, path or options") as info:
        from_url(url)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize("url", ["bogus://", "", "localhost:6379", "http://x"])
def test_from_url_unknown_scheme(url: str) -> None:
    with pytest.raises(ValueError, match=r"unknown broker URL.*expected memory://") as info:
        from_url(url)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize("url", ["redis://localhost", "rediss://cache:6380/2", "redis://"])
def test_from_url_redis_and_rediss(url: str) -> None:
    broker = from_url(url)
    assert isinstance(broker, RedisBroker)
    assert broker.scheme == url.split(":", 1)[0]


def test_a_bad_redis_url_is_refused_by_the_redis_broker() -> None:
    with pytest.raises(ValueError, match="database number"):
        from_url("redis://localhost/x")


def test_without_the_redis_extra_a_redis_url_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_broker, "_missing", ImportError("No module named 'coredis'"))
    with pytest.raises(ValueError) as info:
        from_url("redis://localhost")
    assert str(info.value) == f"broker redis://: {redis_broker.INSTALL_HINT}"
    assert isinstance(info.value.__cause__, ImportError)
    assert isinstance(from_url("memory://"), MemoryBroker)  # the memory broker needs nothing
