"""The Redis Cluster broker's configuration: its URL of seed nodes and its options.

A cluster spreads channels over its masters with sharded pub/sub (Redis 7): a topic's
messages go to, and are read from, the one shard that serves its hash slot, instead of
every node of the cluster as classic ``PUBLISH`` does. So the pub/sub load grows with
the number of shards. ``shards.py`` holds the session's links to the masters.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote

from .._base import Broker, BrokerSession, StateListener
from . import INSTALL_HINT, _missing, check_options, split_options
from .slots import Address

if _missing is None:
    from coredis.connection import BaseConnection, TCPConnection, TCPLocation

    from .clustered import ClusterSession

#: The schemes of a cluster URL: plain and TLS.
SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379


def parse_seeds(netloc: str) -> list[Address]:
    """``host:port,[v6]:port,...`` as addresses (port 6379 where none is given).

    Raises:
        ValueError: a seed is empty or its port invalid.
    """
    seeds = []
    for raw in netloc.split(","):
        host, port = raw, ""
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise ValueError(f"invalid seed {raw!r} in the Redis Cluster URL")
            port = rest[1:]
        elif ":" in raw:
            host, _, port = raw.rpartition(":")
        if not host:
            raise ValueError(f"empty seed {raw!r} in the Redis Cluster URL: give host:port")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"invalid port in seed {raw!r} of the Redis Cluster URL")
        seeds.append(Address(host, int(port or DEFAULT_PORT)))
    return seeds


class RedisClusterBroker(Broker):
    """Pub/sub through a Redis Cluster (Redis 7 or later), sharded by topic.

    Each session finds the cluster's masters from any reachable seed (``CLUSTER
    SLOTS``) and keeps a subscriber and a publisher connection to each. A topic's
    channel is ``<prefix>{<topic>}``: its hash tag puts the channel and the topic's
    history keys in one slot. See docs/brokers.md for guarantees and failure windows.

    Args:
        url: ``redis+cluster://[[user]:password@]host:port[,host:port...]``, or
            ``rediss+cluster://`` for TLS. Any of the cluster's nodes will do as seeds;
            give several, in case one is down at start.
        ssl_context: TLS settings for ``rediss+cluster://``; by default the system's
            CA store and hostname checks.

    The other options are those of :class:`~wsroute.brokers.RedisBroker`:
    ``prefix``, ``backlog``, ``timeout``, ``publish_timeout``,
    ``health_check_interval``, ``start_timeout`` and ``give_up_after`` (counted per
    shard: a shard lost for that long ends the session; while one is lost, the others
    go on and the session reports itself lost). A master unreachable at start is such
    a shard from the start, if at least one other master is reached: ``start_timeout``
    is then how long to wait for every master before starting without it.

    Raises:
        ImportError: coredis is not installed (the message says how to install it).
        ValueError: the URL or an option is invalid.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wsroute:",
        backlog: int = 4096,
        timeout: float = 5.0,
        publish_timeout: float = 5.0,
        health_check_interval: float = 5.0,
        start_timeout: float = 0.0,
        give_up_after: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if _missing is not None:
            raise ImportError(INSTALL_HINT) from _missing
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            raise ValueError(
                "a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://,"
                f" not {url!r}"
            )
        if "?" in rest:
            raise ValueError(
                "options in the URL's query need RedisClusterBroker.from_url(); pass"
                " keyword arguments to RedisClusterBroker()"
            )
        netloc, _, path = rest.partition("/")
        if path.strip("/") not in ("", "0"):
            raise ValueError(f"a Redis Cluster has only database 0, not {path!r}")
        userinfo, at, hosts = netloc.rpartition("@")
        if not hosts:
            raise ValueError(f"no seed node in the Redis Cluster URL {scheme}://...")
        self.seeds = parse_seeds(hosts)
        user, _, password = userinfo.partition(":")
        self._username = unquote(user) if at and user else None
        self._password = unquote(password) if at and password else None
        check_options(
            backlog=backlog,
            timeout=timeout,
            publish_timeout=publish_timeout,
            health_check_interval=health_check_interval,
            start_timeout=start_timeout,
            give_up_after=give_up_after,
        )
        self.scheme = scheme
        self.prefix = prefix
        self.backlog = backlog
        self.timeout = timeout
        self.publish_timeout = publish_timeout
        self.health_check_interval = health_check_interval
        self.start_timeout = start_timeout
        self.give_up_after = give_up_after
        if ssl_context is None and scheme == "rediss+cluster":
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context

    @classmethod
    def from_url(cls, url: str) -> RedisClusterBroker:
        """A broker from a URL whose query may set options, as ``--broker`` does, e.g.
        ``redis+cluster://10.0.0.1:7000,10.0.0.2:7000?prefix=shop:``.

        Raises:
            ImportError: coredis is not installed.
            ValueError: the URL, an option name or an option value is invalid.
        """
        base, options = split_options(url)
        return cls(base, **options)

    def describe(self) -> str:
        return f"{self.scheme}://{','.join(map(str, self.seeds))}"

    def _new_connection(self, address: Address | None = None) -> BaseConnection:
        """A connection to the node at ``address`` (by default the first seed)."""
        host, port = address or self.seeds[0]
        return TCPConnection(
            TCPLocation(host, port),
            connect_timeout=self.timeout,
            username=self._username,
            password=self._password,
            ssl_context=self._ssl_context,
        )

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        """Open a session: returns once every master is connected, or once some are
        and the others failed (with ``start_timeout``: failed until then); the session
        then reports itself lost (``on_state``) before returning, until every shard
        is reached.

        Raises:
            BrokerError: no master could be reached within ``start_timeout`` at start,
                or a shard was lost (or never reached) for ``give_up_after`` seconds.
        """
        async with ClusterSession(self, on_state).running() as session:
            yield session
