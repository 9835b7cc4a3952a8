"""An in-memory WebSocket client that runs the real connection code of an app.

``open_client(app)`` joins a client to the app through ``trio.testing``'s memory
streams: the server side is the same ``Runtime.handle_stream`` that serves TCP
(handshake, on_connect, dispatch, outbox, on_disconnect), the client side is
wsroute's own sans-IO protocol in the client role (``_connection``), behind a
:class:`~wsroute.testing._client.TestClient`. No ports, no threads, so timeouts
follow trio's clock and ``autojump_clock`` makes them instant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal
from urllib.parse import urlencode

import orjson
import trio
import trio.testing

from .._app import App
from .._msgpack import SUBPROTOCOL as MSGPACK
from .._protocol import RECOVER_PARAM
from .._request import Headers
from .._util import collapse_exception_group
from .._wire.deflate import Deflate
from ._client import TestClient
from ._connection import Rejected, connect
from ._messages import HandshakeRejected

#: What ``compression="deflate"`` offers: what browsers do, no constraint on the server.
_AS_BROWSERS = Deflate(server_context_takeover=True, client_context_takeover=True)


def check_app(app: object, source: str) -> App:
    """``app`` if it is an App; else a ``TypeError`` that says what ``source`` gave
    instead. The likely mistake is an app factory passed uncalled (``make_app``), which
    would otherwise fail deep inside with ``'function' object has no attribute ...``."""
    if isinstance(app, App):
        return app
    if callable(app):
        name = getattr(app, "__name__", repr(app))
        raise TypeError(
            f"{source} {name}, not a wsroute.App: if it builds the app, call it ({name}())"
        )
    raise TypeError(f"{source} {app!r:.80}, not a wsroute.App")


@asynccontextmanager
async def open_app(app: App) -> AsyncIterator[App]:
    """Run ``app`` (broker session, lifespan, background tasks) without a listener.

    Clients opened inside share it. Without ``open_app``, the first ``open_client``
    of an app runs it for as long as that client is open.

    Raises:
        TypeError: ``app`` is not an App (a factory not called, say).
    """
    async with check_app(app, "open_app got").running_context():
        yield app


@asynccontextmanager
async def open_client(
    app: App,
    *,
    path: str = "/",
    query: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    remote: tuple[str, int] = ("127.0.0.1", 40000),
    subprotocols: Iterable[str] = (),
    msgpack: bool = False,
    compression: Deflate | Literal["deflate"] | None = None,
    recover: Mapping[str, tuple[int, str]] | None = None,
) -> AsyncIterator[TestClient]:
    """Connect an in-memory client to ``app``; close it on exit.

    Args:
        path: the request path.
        query: query parameters, appended to ``path``.
        headers: extra request headers.
        remote: the client address the app sees in ``conn.request.remote``.
        subprotocols: subprotocols the client proposes.
        msgpack: propose ``wsroute.v1.msgpack`` first: if the app selects it, the
            client sends and expects msgpack in binary frames (``client.subprotocol``
            says which it chose).
        compression: offer permessage-deflate: ``"deflate"`` offers what browsers
            do (no constraint on the server), a :class:`wsroute.Deflate` what it
            allows (``server_context_takeover=False`` asks the server to keep none,
            for instance); ``client.compression`` then says what the app agreed to.
        recover: the last position seen per topic, ``{topic: (offset, epoch)}``,
            sent as ``wsroute.recover`` (docs/history.md): topics the app subscribes
            the connection to are recovered from there.

    Raises:
        HandshakeRejected: the server refused the upgrade (status and body).
        TypeError: ``app`` is not an App (a factory not called, say).
    """
    app = check_app(app, "open_client got")
    resource = path
    pairs = list(_pairs(query or ()))
    if recover is not None:
        positions = {topic: [offset, epoch] for topic, (offset, epoch) in recover.items()}
        pairs.append((RECOVER_PARAM, orjson.dumps(positions).decode()))
    if pairs:
        resource += ("&" if "?" in path else "?") + urlencode(pairs)
    extra = [(name.encode(), value.encode()) for name, value in _pairs(headers or ())]
    with collapse_exception_group():
        async with AsyncExitStack() as stack:
            if not app.running:
                await stack.enter_async_context(app.running_context())
            runtime = app._runtime
            assert runtime is not None
            client_stream, server_stream = trio.testing.memory_stream_pair()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        lambda: runtime.handle_stream(server_stream, remote=remote),
                        name="wsroute test server side",
                    )
                    ws = await connect(
                        nursery,
                        client_stream,
                        "testserver",
                        resource,
                        subprotocols=[MSGPACK, *subprotocols] if msgpack else list(subprotocols),
                        headers=extra,
                        compression=_AS_BROWSERS if compression == "deflate" else compression,
                    )
                    client = TestClient(ws)
                    try:
                        yield client
                    finally:
                        with trio.CancelScope(shield=True):
                            with trio.move_on_after(runtime.config.close_timeout):
                                await ws.aclose()
                            await trio.aclose_forcefully(client_stream)
            except* Rejected as group:
                rejected = group.exceptions[0]
                assert isinstance(rejected, Rejected)
                raise HandshakeRejected(
                    rejected.status, rejected.body, Headers(rejected.headers)
                ) from None


def _pairs(
    items: Mapping[str, str] | Iterable[tuple[str, str]],
) -> Iterable[tuple[str, str]]:
    return items.items() if isinstance(items, Mapping) else items
