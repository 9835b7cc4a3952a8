"""Pub/sub brokers: the interface, the embedded memory broker, Redis, and URL selection.

``RedisBroker`` is imported on first use, so that ``wsroute`` works without the
``redis`` extra (coredis) installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._base import Broker as Broker
from ._base import BrokerMessage as BrokerMessage
from ._base import BrokerSession as BrokerSession
from ._base import BrokerState as BrokerState
from ._base import StateListener as StateListener
from .memory import MemoryBroker as MemoryBroker

if TYPE_CHECKING:
    from .redis import RedisBroker as RedisBroker

__all__ = [
    "Broker",
    "BrokerMessage",
    "BrokerSession",
    "BrokerState",
    "MemoryBroker",
    "RedisBroker",
    "StateListener",
    "from_url",
]


def __getattr__(name: str) -> Any:
    if name == "RedisBroker":
        from .redis import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_url(url: str) -> Broker:
    """Make a broker from a URL: ``memory://``, or ``redis://``/``rediss://`` (see
    :meth:`RedisBroker.from_url` for credentials, database and options).

    Raises:
        ValueError: the scheme is unknown, the URL is invalid, or the broker it names
            is not installed (the message says how to install it).
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBroker()
    if scheme in {"redis", "rediss"}:
        from .redis import INSTALL_HINT, RedisBroker

        try:
            return RedisBroker.from_url(url)
        except ImportError as exc:
            raise ValueError(f"broker {scheme}://: {INSTALL_HINT}") from exc
    raise ValueError(f"unknown broker URL {url!r}: expected memory://, redis:// or rediss://")
