"""``connect``: the Python client for the length of an ``async with`` block.

The client runs in a nursery of its own for the block: nothing outlives it. Leaving
the block closes the client, under a shield, so that a cancelled block still closes
the connection with its handshake.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import cattrs
import trio

from .._errors import ClientError
from .._util import collapse_exception_group
from ._backoff import Backoff
from ._client import Client
from ._replays import Replayed
from ._supervisor import Token


@asynccontextmanager
async def connect(
    url: str,
    *,
    token: Token | None = None,
    headers: Mapping[str, str] | None = None,
    subprotocols: tuple[str, ...] | list[str] = (),
    msgpack: bool = False,
    reconnect: Backoff | None = Backoff(),  # noqa: B008 - immutable
    request_timeout: float = 30.0,
    connect_timeout: float = 10.0,
    close_timeout: float = 5.0,
    max_message_size: int = 16 * 1024 * 1024,
    ssl_context: ssl.SSLContext | None = None,
    ping_interval: float | None = 20.0,
    ping_timeout: float = 20.0,
    converter: cattrs.Converter | None = None,
    on_replay_error: Callable[[ClientError, Replayed], Any] | None = None,
    recover: bool = True,
    positions: Mapping[str, tuple[int, str]] | None = None,
) -> AsyncIterator[Client]:
    """Connect to a wsroute server for the length of the block.

    Waits until the first connection is open, retrying per ``reconnect``; the
    client then reconnects by itself whenever the connection drops for a reason
    worth retrying. Leaving the block closes it.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        token: a bearer token, or a function (sync or async) returning a fresh one,
            called before every connection attempt; sent as ``Authorization: Bearer``.
        headers: extra headers for the opening handshake.
        subprotocols: subprotocols to offer; the server's choice is
            ``client.subprotocol``.
        msgpack: offer ``wsroute.v1.msgpack`` first: messages in msgpack, ``bytes``
            as binary. A connection speaks the format the server selected, JSON when
            it did not select msgpack.
        reconnect: the backoff policy; ``None`` never reconnects.
        request_timeout: default seconds a request may take.
        connect_timeout: seconds for one connection attempt.
        close_timeout: seconds for the closing handshake.
        max_message_size: the largest message accepted from the server.
        ssl_context: for ``wss://``, the client context that checks the server's
            certificate; the system's trusted CAs when ``None``. A certificate that
            fails the check is final: ``ConnectError`` at once, no reconnect.
        ping_interval: seconds between the client's pings; ``None`` for none.
        ping_timeout: seconds a pong may take before the connection counts as dead.
        converter: the cattrs converter for payloads and typed replies; a strict one
            (``wsroute.make_converter()``) by default.
        on_replay_error: called with the error and the request when a replayed
            request fails on reconnect; logs a warning by default.
        recover: keep the last ``offset`` and ``epoch`` received per topic with
            history (``client.positions``) and present them in the ``wsroute.recover``
            query parameter of every connection attempt, so that a topic joined again
            (by a replayed request) first sends what was missed, then a
            ``wsroute.recovery`` event: reload when its ``recovered`` is false.
            ``False`` neither keeps nor presents any.
        positions: where to start, ``{topic: (offset, epoch)}``, e.g.
            ``client.positions`` saved before a restart: presented from the first
            connection attempt on, in their order (the last the most recent).

    Raises:
        ConnectError: the first connection could not be opened (and retrying gave up,
            or the failure was final: a refusal such as 401, an untrusted certificate).
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL with a host (at
            once: it is never retried); a position is not ``(offset, epoch)`` (an
            integer from 0 to 2^53 and a string of 1 to 64 characters), or
            ``positions`` come with ``recover=False``.
    """
    client = Client(
        url,
        token=token,
        headers=headers,
        subprotocols=tuple(subprotocols),
        msgpack=msgpack,
        reconnect=reconnect,
        request_timeout=request_timeout,
        connect_timeout=connect_timeout,
        close_timeout=close_timeout,
        max_message_size=max_message_size,
        ssl_context=ssl_context,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        converter=converter,
        on_replay_error=on_replay_error,
        recover=recover,
        positions=positions,
    )
    with collapse_exception_group():
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                yield client
            finally:
                with trio.CancelScope(shield=True):
                    await client.aclose()
