"""Brokers by URL, for ``wsroute run --broker`` and configuration files."""

from __future__ import annotations

from urllib.parse import urlsplit

from ._base import Broker
from .memory import MemoryBroker


def from_url(url: str) -> Broker:
    """Make a broker from a URL: ``memory://``, ``redis://``/``rediss://`` (see
    :meth:`RedisBroker.from_url` for credentials, database and options), or
    ``redis+cluster://``/``rediss+cluster://`` with seed nodes for a Redis Cluster
    (:meth:`RedisClusterBroker.from_url`).

    Raises:
        ValueError: the scheme is unknown, the URL is invalid, or the broker it names
            is not installed (the message says how to install it).
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query or parts.fragment:
            # Ignoring them would hide a typo, or an option meant for another broker.
            raise ValueError(f"the memory broker takes no host, path or options: {url!r}")
        return MemoryBroker()
    if scheme in {"redis", "rediss"}:
        from .redis import INSTALL_HINT, RedisBroker

        try:
            return RedisBroker.from_url(url)
        except ImportError as exc:
            raise ValueError(f"broker {scheme}://: {INSTALL_HINT}") from exc
    if scheme in {"redis+cluster", "rediss+cluster"}:
        from .redis import INSTALL_HINT
        from .redis.cluster import RedisClusterBroker

        try:
            return RedisClusterBroker.from_url(url)
        except ImportError as exc:
            raise ValueError(f"broker {scheme}://: {INSTALL_HINT}") from exc
    raise ValueError(
        f"unknown broker URL {url!r}: expected memory://, redis://, rediss://,"
        " redis+cluster:// or rediss+cluster://"
    )
