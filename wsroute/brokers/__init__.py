"""Pub/sub brokers: the interface, the embedded memory broker, and URL selection."""

from __future__ import annotations

from urllib.parse import urlsplit

from ._base import Broker as Broker
from ._base import BrokerMessage as BrokerMessage
from ._base import BrokerSession as BrokerSession
from ._base import BrokerState as BrokerState
from ._base import StateListener as StateListener
from .memory import MemoryBroker as MemoryBroker

__all__ = [
    "Broker",
    "BrokerMessage",
    "BrokerSession",
    "BrokerState",
    "MemoryBroker",
    "StateListener",
    "from_url",
]


def from_url(url: str) -> Broker:
    """Make a broker from a URL such as ``memory://``.

    Raises:
        ValueError: the scheme is unknown or not available in this version.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBroker()
    if scheme in {"redis", "rediss"}:
        raise ValueError(
            f"broker {scheme}:// is not available in this version of wsroute"
            " (planned: the Redis broker); use memory://"
        )
    raise ValueError(f"unknown broker URL {url!r}: expected memory://")
