"""Pub/sub brokers: the interface, the embedded memory broker, Redis, and URL selection.

``RedisBroker`` and ``RedisClusterBroker`` are imported on first use, so that
``wsroute`` works without the ``redis`` extra (coredis) installed.
"""

from __future__ import annotations

import typing

from .._history import History as History
from .._history import Position as Position
from ._base import Broker as Broker
from ._base import BrokerMessage as BrokerMessage
from ._base import BrokerSession as BrokerSession
from ._base import BrokerState as BrokerState
from ._base import HistoryPage as HistoryPage
from ._base import StateListener as StateListener
from ._urls import from_url as from_url
from .memory import MemoryBroker as MemoryBroker

if typing.TYPE_CHECKING:
    from .redis import RedisBroker as RedisBroker
    from .redis.cluster import RedisClusterBroker as RedisClusterBroker

__all__ = [
    "Broker",
    "BrokerMessage",
    "BrokerSession",
    "BrokerState",
    "History",
    "HistoryPage",
    "MemoryBroker",
    "Position",
    "RedisBroker",
    "RedisClusterBroker",
    "StateListener",
    "from_url",
]


def __getattr__(name: str) -> typing.Any:
    if name == "RedisBroker":
        from .redis import RedisBroker

        return RedisBroker
    if name == "RedisClusterBroker":
        from .redis.cluster import RedisClusterBroker

        return RedisClusterBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
