"""The Redis Cluster broker on a real local cluster: the conformance suite, routing by
slot, and what it does with a URL."""

from __future__ import annotations

import pytest

from wsroute.brokers import RedisClusterBroker
from wsroute.testing import broker_checks

from .rediscluster import RedisCluster, redis_cluster

__all__ = ["redis_cluster"]


@pytest.mark.parametrize("check", list(broker_checks()))
async def test_conformance(check: str, redis_cluster: RedisCluster) -> None:
    await broker_checks()[check](lambda: RedisClusterBroker(redis_cluster.url()))
