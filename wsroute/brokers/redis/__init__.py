"""The Redis broker: broadcasts shared by every wsroute process attached to one Redis.

Install it with ``pip install 'wsroute[redis]'``. It is built on coredis, whose
anyio core runs on trio (redis-py's asyncio client does not). Each session keeps one
subscriber connection, multiplexing every topic its process hosts, and one publisher
connection that pipelines the publishes of all handlers (``publisher.py``). It keeps
history (``App(history=...)``) in a stream and a hash per topic, and presence
(``App(presence=...)``) in a hash per topic and the nodes' heartbeats, written and
read by Lua scripts queued with the publishes (``kept.py``, ``pages.py``, ``present.py``).

This module holds the configuration (:class:`RedisBroker`: URL, options) and opens
sessions; ``session.py`` is what the app calls on a session, ``supervisor.py`` keeps
its connection up, ``backlog.py`` buffers what it receives for the app, and
``link.py`` talks to Redis (``cluster.py``, ``clustered.py``, ``shards.py`` and
``topology.py`` do the same on a Redis Cluster).
See docs/brokers.md for the delivery guarantees and outage behaviour.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._base import Broker, BrokerSession, StateListener

try:
    from coredis.connection import BaseConnection, TCPConnection, TCPLocation

    from .session import RedisSession as RedisSession
except ImportError as exc:  # the redis extra is not installed
    _missing: ImportError | None = exc
else:
    _missing = None

INSTALL_HINT = "the Redis broker needs coredis: pip install 'wsroute[redis]'"

_FLOAT_OPTIONS = (
    "timeout",
    "publish_timeout",
    "health_check_interval",
    "start_timeout",
    "give_up_after",
)
_URL_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "prefix": str,
    "backlog": int,
    **dict.fromkeys(_FLOAT_OPTIONS, float),
}


def check_options(
    *,
    backlog: int,
    timeout: float,
    publish_timeout: float,
    health_check_interval: float,
    start_timeout: float,
    give_up_after: float,
) -> None:
    """Refuse option values no session could work with.

    Raises:
        ValueError: naming the option and the value refused.
    """
    if backlog < 1:
        raise ValueError("backlog must be at least 1")
    for name, value in (
        ("timeout", timeout),
        ("publish_timeout", publish_timeout),
        ("health_check_interval", health_check_interval),
        ("give_up_after", give_up_after),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value!r}")
    if not start_timeout >= 0:
        raise ValueError(f"start_timeout must be 0 or more, not {start_timeout!r}")


def split_options(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without its query, and the broker options its query sets.

    Raises:
        ValueError: an option name is unknown or its value invalid.
    """
    base, _, query = url.partition("?")
    options: dict[str, Any] = {}
    for name, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        parse = _URL_OPTIONS.get(name)
        if parse is None:
            raise ValueError(
                f"unknown Redis broker option {name!r} in the URL: expected one of"
                f" {', '.join(_URL_OPTIONS)}"
            )
        if name in options:  # parse_qsl keeps both; which one wins is nobody's guess
            raise ValueError(f"Redis broker option {name!r} is given twice in the URL")
        try:
            options[name] = parse(raw)
        except ValueError:
            raise ValueError(f"invalid value {raw!r} for Redis broker option {name!r}") from None
    return base, options


class RedisBroker(Broker):
    """Pub/sub through Redis, so that several processes share broadcasts.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, or ``rediss://`` for TLS.
            Credentials are percent-decoded and never logged.
        prefix: put before every topic to name its Redis channel (``<prefix><topic>``),
            its history keys (``<prefix>{<topic>}:s`` and ``:m``) and its presence
            keys (``<prefix>{<topic>}:p``, ``<prefix>presence:...``), so several
            apps can share one Redis (Redis pub/sub ignores the database number).
        backlog: the most messages the session holds for its consumer; when full,
            further messages are dropped, counted in ``session.dropped`` and logged,
            so the Redis connection is never left unread (see docs/brokers.md).
        timeout: seconds to connect, for Redis to confirm a subscription and to
            answer a health check.
        publish_timeout: seconds a publish waits for Redis before failing.
        health_check_interval: seconds between PINGs that notice a hung Redis or a
            silently broken network.
        start_timeout: seconds to keep trying the first connection; ``0`` fails at
            the first refusal.
        give_up_after: seconds a lost connection may stay lost before the session
            raises :class:`BrokerError` out of ``connect()``.
        ssl_context: TLS settings for ``rediss://``; by default the system's CA
            store and hostname checks.

    Raises:
        ImportError: coredis is not installed (the message says how to install it).
        ValueError: the URL or an option is invalid.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
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
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss"}:
            raise ValueError(f"a Redis URL starts with redis:// or rediss://, not {url!r}")
        if parts.query:
            raise ValueError(
                "options in the URL's query need RedisBroker.from_url(); pass keyword"
                " arguments to RedisBroker()"
            )
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"invalid port in Redis URL {parts.netloc!r}") from None
        path = parts.path.strip("/")
        if not path.isdigit() and path:
            raise ValueError(f"the Redis URL path must be a database number, not {path!r}")
        check_options(
            backlog=backlog,
            timeout=timeout,
            publish_timeout=publish_timeout,
            health_check_interval=health_check_interval,
            start_timeout=start_timeout,
            give_up_after=give_up_after,
        )
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = port
        self.db = int(path or 0)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.prefix = prefix
        self.backlog = backlog
        self.timeout = timeout
        self.publish_timeout = publish_timeout
        self.health_check_interval = health_check_interval
        self.start_timeout = start_timeout
        self.give_up_after = give_up_after
        if ssl_context is None and self.scheme == "rediss":
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context

    @classmethod
    def from_url(cls, url: str) -> RedisBroker:
        """A broker from a URL whose query may set options, as ``--broker`` does.

        For example ``redis://:secret@cache:6379/0?prefix=shop:&give_up_after=30``.
        Every keyword of the constructor but ``ssl_context`` may be given this way.

        Raises:
            ImportError: coredis is not installed.
            ValueError: the URL, an option name or an option value is invalid.
        """
        base, options = split_options(url)
        return cls(base, **options)

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.db}"

    def _new_connection(self) -> BaseConnection:
        return TCPConnection(
            TCPLocation(self.host, self.port),
            connect_timeout=self.timeout,
            username=self._username,
            password=self._password,
            db=self.db,
            ssl_context=self._ssl_context,
        )

    @asynccontextmanager
    async def connect(
        self, *, on_state: StateListener | None = None
    ) -> AsyncIterator[BrokerSession]:
        """Open a session: returns once connected (or raises BrokerError).

        Raises:
            BrokerError: Redis could not be reached within ``start_timeout`` at start,
                or was lost for ``give_up_after`` seconds while the session was open.
        """
        async with RedisSession(self, on_state).running() as session:
            yield session
