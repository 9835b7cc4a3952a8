"""The client's life: connect, serve, reconnect per the :class:`Backoff`, or give up.

One connection attempt opens the WebSocket (``_dial``: TLS first, then trio-websocket's
public client over it) with the headers and the positions to recover of that moment,
and serves it until it ends: in a nursery that ends with it, a reader (``_reader``), a
writer and, if asked, a pinger (``_link``). The replayed requests are made again
(``_replays``) before the client is ``open``. When the connection ends, its pending
requests fail with :class:`Disconnected` at once; then the backoff policy decides
whether, and when, the next attempt comes.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any, NamedTuple

import trio
import trio_websocket

from .._errors import ClientClosed, ConnectError, Disconnected
from .._protocol import RECOVER_PARAM
from ._backoff import Backoff
from ._dial import Target, TLSFailure, open_websocket
from ._events import EventStreams
from ._link import ABNORMAL, Link, ping, write
from ._positions import Positions, with_param
from ._reader import Reader
from ._replays import Replays
from ._requests import Requests
from ._state import State, StateBoard

logger = logging.getLogger("wsroute.client")

Token = str | Callable[[], str | Awaitable[str]]


class _Ended(NamedTuple):
    """How one connection attempt ended."""

    opened: bool  # it reached the open state
    retry: bool  # the backoff policy reconnects after such an end
    code: int
    reason: str
    refusal: ConnectError | None  # why it never opened, if it did not


class Supervisor:
    """Runs the client's connections one after the other, and keeps its state."""

    def __init__(
        self,
        url: str,
        *,
        token: Token | None,
        headers: Mapping[str, str] | None,
        subprotocols: tuple[str, ...],
        reconnect: Backoff | None,
        request_timeout: float,
        connect_timeout: float,
        close_timeout: float,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None,
        ping_interval: float | None,
        ping_timeout: float,
        requests: Requests,
        events: EventStreams,
        replays: Replays,
        positions: Positions | None,
    ) -> None:
        # A URL no attempt can use is the caller's mistake: say so now, rather than
        # retry it forever with a warning per attempt.
        Target(url)
        self.url = url
        self._token = token
        self._extra_headers = dict(headers or {})
        self._subprotocols = subprotocols
        self._backoff = reconnect
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._max_message_size = max_message_size
        self._ssl_context = ssl_context
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._requests = requests
        self._events = events
        self._replays = replays
        self._positions = positions
        self._reader = Reader(url, requests, events, positions)
        self.states = StateBoard(url)
        self._link: Link | None = None
        self._last_close: tuple[int, str] = (ABNORMAL, "")
        self._closing = False
        self._started = False  # the first connection opened
        self._opened = False  # the current connection reached the open state
        self._run_scope = trio.CancelScope()
        self._warned_left_out = False
        #: The subprotocol the server selected on the current connection.
        self.subprotocol: str | None = None

    # -- state ---------------------------------------------------------------------------

    def _set_state(
        self, state: State, code: int | None = None, reason: str = "", **more: Any
    ) -> None:
        if not self.states.enter(state, code, reason, **more):
            return
        if state is State.CLOSED:
            self._requests.fail_all(ClientClosed, "the client is closed", code or ABNORMAL, reason)
            self._events.end()
            self.states.end_streams()
        self.states.wake()

    async def wait_open(self) -> Link:
        """The open connection, once there is one.

        Raises:
            ClientClosed: the client is closed.
        """
        while True:
            if self.states.current is State.OPEN and self._link is not None:
                return self._link
            if self.states.current is State.CLOSED:
                code, reason = self._last_close
                raise ClientClosed(f"the client is closed ({code} {reason})", code, reason)
            await self.states.wait_change()

    # -- connecting ------------------------------------------------------------------------

    async def _headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(name.encode(), value.encode()) for name, value in self._extra_headers.items()]
        token: Any = self._token
        if callable(token):
            token = token()
            if inspect.isawaitable(token):
                token = await token
        if token:
            headers.append((b"Authorization", f"Bearer {token}".encode()))
        return headers

    def _attempt_url(self) -> str:
        """The URL of the next connection attempt: with the positions to recover."""
        positions = self._positions
        presented = positions.presented() if positions is not None else None
        if positions is None or presented is None:
            return self.url
        if presented.left_out and not self._warned_left_out:
            self._warned_left_out = True
            logger.warning(
                "%s: %d topics with history seen, more than fit in %s: the %d most recently"
                " updated are presented, the others are not recovered",
                self.url,
                len(positions),
                RECOVER_PARAM,
                len(positions) - presented.left_out,
            )
        return with_param(self.url, RECOVER_PARAM, presented.value)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect: the client's life. Reports once first open.

        Raises:
            ConnectError: the first connection failed for good (before it opened).
        """
        failures = 0  # attempts in a row that did not reach the open state
        with self._run_scope:
            while True:
                ended = await self._attempt(task_status)
                if self._closing:
                    return
                failures = 0 if ended.opened else failures + 1
                self._last_close = (ended.code, ended.reason)
                status = ended.refusal.status if ended.refusal is not None else None
                backoff = self._backoff
                if not ended.retry or backoff is None or backoff.gives_up(failures):
                    self._set_state(State.CLOSED, ended.code, ended.reason, status=status)
                    if not self._started:
                        raise ended.refusal or ConnectError(
                            f"could not connect to {self.url}: {ended.code} {ended.reason}"
                        )
                    return
                delay = backoff.delay(failures + 1)
                if self._started:
                    self._set_state(
                        State.RECONNECTING,
                        ended.code,
                        ended.reason,
                        status=status,
                        attempt=failures + 1,
                        delay=delay,
                    )
                await trio.sleep(delay)

    async def _attempt(self, task_status: trio.TaskStatus[None]) -> _Ended:
        """One connection, from opening to its end."""
        backoff = self._backoff
        try:
            headers = await self._headers()
            async with open_websocket(
                self._attempt_url(),
                self._ssl_context,
                subprotocols=self._subprotocols,
                extra_headers=headers,
                max_message_size=self._max_message_size,
                connect_timeout=self._connect_timeout,
                disconnect_timeout=self._close_timeout,
            ) as ws:
                code, reason, opened = await self._serve(ws, task_status)
        except TLSFailure as failure:
            # An untrusted certificate stays untrusted: final, as a 401 is.
            error = ConnectError(f"could not connect to {self.url}: {failure}")
            error.__cause__ = failure.__cause__
            retry = not failure.verification
            return _Ended(False, retry, ABNORMAL, str(failure), error)
        except trio_websocket.ConnectionRejected as refused:
            status = refused.status_code
            body = bytes(refused.body or b"")
            text = body.decode(errors="replace").strip()
            error = ConnectError(
                f"{self.url} refused the connection: HTTP {status} {text}".strip(), status, body
            )
            retry = backoff is not None and backoff.retries_status(status)
            return _Ended(False, retry, ABNORMAL, f"HTTP {status} {text}".strip(), error)
        except (trio_websocket.HandshakeError, OSError) as exc:
            error = ConnectError(f"could not connect to {self.url}: {exc}")
            return _Ended(False, True, ABNORMAL, str(exc) or type(exc).__name__, error)
        except Exception as exc:
            # trio-websocket's reader can die on its own (issue #184: a ping that
            # arrives after this side's close frame): the connection is gone, as if
            # dropped, and the client goes on.
            if not self._closing:
                logger.warning("%s: the connection failed: %r", self.url, exc, exc_info=exc)
            return _Ended(self._opened, True, ABNORMAL, "connection failed", None)
        retry = backoff is not None and backoff.retries_close(code)
        return _Ended(opened, retry, code, reason, None)

    async def _serve(
        self, ws: trio_websocket.WebSocketConnection, task_status: trio.TaskStatus[None]
    ) -> tuple[int, str, bool]:
        """Serve one open connection until it ends; return its close code and reason,
        and whether it got as far as the open state."""
        opened = self._opened = False
        self.subprotocol = ws.subprotocol
        async with trio.open_nursery() as nursery:
            link = Link(ws, nursery.cancel_scope)
            self._link = link
            nursery.start_soon(self._reader.read, link)
            nursery.start_soon(write, link)
            if self._ping_interval is not None:
                nursery.start_soon(ping, link, self._ping_interval, self._ping_timeout, self.url)
            try:
                await self._replays.make_again(link, self._requests, self._request_timeout)
                if not self._closing:
                    opened = self._opened = True
                    self._set_state(State.OPEN)
                    if not self._started:
                        self._started = True
                        task_status.started()
                        # From here the client's tasks end by aclose() only, which
                        # connect() always calls: a cancelled ``async with connect()``
                        # must not cancel the reader that the closing handshake needs.
                        self._run_scope.shield = True
                await trio.sleep_forever()
            finally:
                self._link = None
                link.outgoing.close()
                code, reason = link.closed or (ABNORMAL, "")
                self._requests.fail_all(Disconnected, "the connection dropped", code, reason)
        code, reason = link.closed or (ABNORMAL, "")
        return code, reason, opened

    # -- closing -----------------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Close for good, the connection with ``code`` and ``reason`` (checked by
        ``Client.aclose``); at once when closing already."""
        if self._closing:
            return
        self._closing = True
        self._last_close = (code, reason)
        self._set_state(State.CLOSED, code, reason)
        link = self._link
        if link is not None:
            with trio.move_on_after(self._close_timeout):
                with suppress(trio_websocket.ConnectionClosed):
                    await link.ws.aclose(code, reason)
            link.end(code, reason)
        self._run_scope.cancel()
