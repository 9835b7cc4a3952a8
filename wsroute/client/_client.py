"""The official Python client: requests matched to replies, events as streams,
reconnect with backoff, and replayed requests.

``connect`` runs the client in a nursery of its own for the ``async with`` block:

- a supervisor task opens the WebSocket (``_dial``: TLS first, then
  trio-websocket's public client over it), serves it until it ends, then
  reconnects per the :class:`Backoff` or gives up;
- for each open connection, in a nursery that ends with it: a reader that hands
  replies to their requests and events to their streams without ever waiting, a
  writer that sends queued frames whole and in order (so that a request cancelled
  by its timeout never cuts a frame in half), and, if asked, a pinger.

Nothing outlives the block. A request that is pending when the connection drops
fails with :class:`Disconnected` at once; while the client reconnects, new requests
wait for it to be open again (within their timeout). Requests made with
``replay=True`` are made again, in their original order, on every reconnect before
the client is ``open``: that is how the topics an app joins from its handlers
come back after a server restart.

Recovery (docs/history.md): the client keeps the last ``offset`` and ``epoch`` it
received per topic with history (``_positions``) and presents them in the
``wsroute.recover`` query parameter of every connection attempt. When a replayed
request joins such a topic again, the server sends the events missed meanwhile, then
a ``wsroute.recovery`` event that says whether the gap was filled, before the
request's reply, so all of them reach the event streams in order before the client
is ``open``. An app that is told ``recovered: false`` reloads.

Messages are JSON in text frames, or msgpack in binary frames on a connection where
the server selected ``wsroute.v1.msgpack`` (offered with ``msgpack=True``); see
``_codec``.
"""

from __future__ import annotations

import enum
import inspect
import itertools
import logging
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Final, NamedTuple

import attrs
import cattrs
import trio
import trio_websocket

from .._converter import describe_error, make_converter
from .._errors import (
    ClientClosed,
    ClientError,
    ClientHandlerError,
    ConnectError,
    Disconnected,
    InvalidReply,
    RequestTimeout,
)
from .._history import Position
from .._msgpack import SUBPROTOCOL as MSGPACK
from .._protocol import RECOVER_PARAM
from .._util import collapse_exception_group
from . import _codec
from ._backoff import Backoff
from ._dial import TLSFailure, open_websocket
from ._positions import Positions, with_param
from ._streams import Overflow, Stream

logger = logging.getLogger("wsroute.client")

Token = str | Callable[[], str | Awaitable[str]]

#: Frames waiting for the writer; a full queue makes senders wait (back-pressure).
_OUTGOING = 1024
#: Ids of requests that timed out, whose late replies are dropped without a warning.
_ABANDONED = 4096
_ABNORMAL: Final = 1006


class State(enum.Enum):
    """Where the client is in its life."""

    CONNECTING = "connecting"  # the first connection is being opened
    OPEN = "open"
    RECONNECTING = "reconnecting"  # lost; waiting, connecting or replaying
    CLOSED = "closed"  # for good


@attrs.frozen
class StateChange:
    """A change of state, with the close that caused it, if any.

    ``RECONNECTING`` is reported before every wait, with the number of the attempt
    to come and the wait before it, so it repeats while the server stays away.
    """

    state: State
    code: int | None = None
    reason: str = ""
    #: The HTTP status of a refused handshake that caused it.
    status: int | None = None
    #: ``RECONNECTING``: the number of the next attempt (from 1) and the seconds
    #: until it.
    attempt: int | None = None
    delay: float | None = None


@attrs.frozen
class Event:
    """An event from the server: ``{"type", "topic"?, "data", "offset"?, "epoch"?}``;
    ``offset`` and ``epoch`` when its topic has history."""

    type: str
    topic: str | None
    data: Any
    offset: int | None = None
    epoch: str | None = None


@attrs.frozen
class Replayed:
    """A request the client makes again on every reconnect."""

    type: str
    data: Any


class _Ended(NamedTuple):
    """How one connection attempt ended."""

    opened: bool  # it reached the open state
    retry: bool  # the backoff policy reconnects after such an end
    code: int
    reason: str
    refusal: ConnectError | None  # why it never opened, if it did not


class _Pending:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: ClientError | None = None

    def settle(self, result: Any = None, error: ClientError | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


class _Link:
    """One open connection: its socket, its format and its queue of frames to send."""

    __slots__ = ("binary", "closed", "outgoing", "scope", "take", "ws")

    def __init__(self, ws: trio_websocket.WebSocketConnection, scope: trio.CancelScope) -> None:
        self.ws = ws
        self.scope = scope  # the connection's nursery: cancelled when it ends
        #: msgpack in binary frames, as the server selected; else JSON in text frames.
        self.binary = ws.subprotocol == MSGPACK
        self.outgoing, self.take = trio.open_memory_channel[str | bytes](_OUTGOING)
        self.closed: tuple[int, str] | None = None  # why it ended, once it has

    def end(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
        self.scope.cancel()


_Filter = tuple[str | None, str | None, Any]  # type, topic, data type


class Client:
    """A connection to a wsroute server that outlives its sockets. Made by
    :func:`connect`; see docs/clients.md."""

    def __init__(
        self,
        url: str,
        *,
        token: Token | None,
        headers: Mapping[str, str] | None,
        subprotocols: tuple[str, ...],
        msgpack: bool,
        reconnect: Backoff | None,
        request_timeout: float,
        connect_timeout: float,
        close_timeout: float,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None,
        ping_interval: float | None,
        ping_timeout: float,
        converter: cattrs.Converter | None,
        on_replay_error: Callable[[ClientError, Replayed], Any] | None,
        recover: bool = True,
        positions: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        if positions and not recover:
            raise ValueError("positions are presented only with recover=True")
        self.url = url
        self._token = token
        self._extra_headers = dict(headers or {})
        # msgpack is offered first; each connection speaks what the server selects.
        self._subprotocols = (
            (MSGPACK, *(name for name in subprotocols if name != MSGPACK))
            if msgpack
            else subprotocols
        )
        self._backoff = reconnect
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._max_message_size = max_message_size
        self._ssl_context = ssl_context
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._converter = converter if converter is not None else make_converter()
        self._on_replay_error = on_replay_error or _log_replay_error
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._abandoned: OrderedDict[int, None] = OrderedDict()
        self._link: _Link | None = None
        self._state = State.CONNECTING
        self._changed = trio.Event()
        self._last_close: tuple[int, str] = (_ABNORMAL, "")
        self._streams: list[tuple[_Filter, Stream[Event]]] = []
        self._state_streams: list[Stream[StateChange]] = []
        self._replays: dict[bytes, Replayed] = {}
        self._closing = False
        self._started = False  # the first connection opened
        self._opened = False  # the current connection reached the open state
        self._run_scope = trio.CancelScope()
        self._positions = Positions(positions) if recover else None
        self._warned_left_out = False
        #: The subprotocol the server selected on the current connection.
        self.subprotocol: str | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def _set_state(
        self, state: State, code: int | None = None, reason: str = "", **more: Any
    ) -> None:
        if state is self._state and state is not State.RECONNECTING:
            return
        self._state = state
        change = StateChange(state, code, reason, **more)
        logger.info(
            "%s: %s%s", self.url, state.value, "" if code is None else f" ({code} {reason})"
        )
        for stream in list(self._state_streams):
            stream.push(change)
        if state is State.CLOSED:
            self._fail_pending(ClientClosed, "the client is closed", code or _ABNORMAL, reason)
            for _, events in list(self._streams):
                events.end()
            for changes in list(self._state_streams):
                changes.end()
        self._changed.set()
        self._changed = trio.Event()

    def state_changes(self, *, buffer: int = 100) -> Stream[StateChange]:
        """The state changes from now on, as an async iterator (oldest dropped when
        ``buffer`` are unread). Ends once the client is closed."""
        stream: Stream[StateChange] = Stream(
            buffer, Overflow.DROP_OLDEST, self._state_streams.remove
        )
        self._state_streams.append(stream)
        if self._state is State.CLOSED:
            stream.end()
        return stream

    async def _wait_open(self) -> _Link:
        while True:
            if self._state is State.OPEN and self._link is not None:
                return self._link
            if self._state is State.CLOSED:
                code, reason = self._last_close
                raise ClientClosed(f"the client is closed ({code} {reason})", code, reason)
            await self._changed.wait()

    # -- requests ------------------------------------------------------------------------

    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        replay: bool = False,
        reply_type: Any = None,
    ) -> Any:
        """Send a request and return its reply's data.

        Waits for the client to be open first (it may be reconnecting). With
        ``replay``, a request that succeeds is made again on every reconnect, before
        the client is open, in the order first made (an identical one is kept once).

        Args:
            data: the payload: JSON-able values, ``bytes`` (binary in msgpack,
                base64 text in JSON), attrs classes or dataclasses (unstructured
                with the client's converter).
            timeout: seconds for the whole request; the client's
                ``request_timeout`` by default.
            reply_type: structure the reply's data into this type (strictly, as
                the server structures payloads).

        Raises:
            ClientHandlerError: the server answered with an error reply.
            RequestTimeout: no reply within ``timeout``.
            Disconnected: the connection dropped before the reply came.
            ClientClosed: the client is closed.
            InvalidReply: the reply's data does not match ``reply_type``.
        """
        payload = self._unstructure(data)
        limit = self._request_timeout if timeout is None else timeout
        with trio.move_on_after(limit):
            link = await self._wait_open()
            result = await self._exchange(link, type, payload)
            if replay:
                key = _codec.replay_key(type, payload)
                self._replays.setdefault(key, Replayed(type, payload))
            return self._structure(result, reply_type, type)
        raise RequestTimeout(f"no reply to {type!r} within {limit:g} s")

    async def emit(self, type: str, data: Any = None, *, timeout: float | None = None) -> None:
        """Send a message without an id: no reply comes back, errors included.

        Waits for the client to be open (within ``timeout``) and for the frame to be
        queued for sending.

        Raises:
            RequestTimeout: the client was not open within ``timeout``.
            ClientClosed: the client is closed.
        """
        payload = self._unstructure(data)
        limit = self._request_timeout if timeout is None else timeout
        with trio.move_on_after(limit):
            link = await self._wait_open()
            await self._send(link, _codec.encode(_codec.message(type, None, payload), link.binary))
            return
        raise RequestTimeout(f"could not send {type!r} within {limit:g} s")

    @property
    def positions(self) -> dict[str, Position]:
        """The last position received per topic with history, ``{topic: Position(offset,
        epoch)}``, as presented on the next connection attempt: a copy, to keep (say,
        on disk, for ``connect(positions=...)`` after a restart). Empty with
        ``recover=False``."""
        return self._positions.copy() if self._positions is not None else {}

    def forget_position(self, topic: str) -> bool:
        """Stop presenting ``topic``'s position when connecting (after leaving it, so
        that joining it again later does not recover everything since); return
        whether there was one."""
        return self._positions.forget(topic) if self._positions is not None else False

    @property
    def replayed(self) -> list[Replayed]:
        """The requests made again on every reconnect, in order."""
        return list(self._replays.values())

    def forget_replay(self, type: str, data: Any = ...) -> None:
        """Stop replaying ``type`` requests with ``data`` (every one of ``type`` when
        ``data`` is not given)."""
        payload = self._unstructure(data) if data is not ... else ...
        for key, replayed in list(self._replays.items()):
            if replayed.type == type and (payload is ... or replayed.data == payload):
                del self._replays[key]

    async def _exchange(self, link: _Link, type: str, payload: Any) -> Any:
        request_id = next(self._ids)
        frame = _codec.encode(_codec.message(type, request_id, payload), link.binary)
        pending = self._pending[request_id] = _Pending()
        try:
            await self._send(link, frame)
            await pending.done.wait()
        finally:
            if self._pending.pop(request_id, None) is not None and not pending.done.is_set():
                self._abandon(request_id)  # cancelled: its reply may still come
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def _send(self, link: _Link, frame: str | bytes) -> None:
        try:
            await link.outgoing.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            code, reason = link.closed or (_ABNORMAL, "")
            raise Disconnected("the connection dropped", code, reason) from None

    def _abandon(self, request_id: int) -> None:
        self._abandoned[request_id] = None
        if len(self._abandoned) > _ABANDONED:
            self._abandoned.popitem(last=False)

    def _fail_pending(self, kind: type[Disconnected], message: str, code: int, reason: str) -> None:
        for pending in self._pending.values():
            pending.settle(error=kind(f"{message} ({code} {reason})".strip(), code, reason))

    def _unstructure(self, data: Any) -> Any:
        if data is None or isinstance(data, str | int | float | bool):
            return data
        return self._converter.unstructure(data)

    def _structure(self, data: Any, kind: Any, what: str) -> Any:
        if kind is None:
            return data
        try:
            return self._converter.structure(data, kind)
        except Exception as exc:
            details = describe_error(exc, kind)
            raise InvalidReply(f"the reply to {what!r} does not match {kind!r}", details) from None

    # -- events ----------------------------------------------------------------------------

    def events(
        self,
        type: str | None = None,
        *,
        topic: str | None = None,
        data_type: Any = None,
        buffer: int = 1024,
        overflow: Overflow | str = Overflow.ERROR,
    ) -> Stream[Event]:
        """The events of ``type`` (any when ``None``) and ``topic`` received from
        now on, as an async iterator; it ends when the client is closed. Events
        whose data does not match ``data_type`` are logged and skipped.

        Args:
            buffer: events held for a slow consumer before ``overflow`` applies.
            overflow: ``"error"`` (:class:`EventsLost` once the buffer is read),
                ``"drop_oldest"`` or ``"drop_newest"`` (counted in ``dropped``).
        """
        entry: tuple[_Filter, Stream[Event]]

        def detach(_: Stream[Event]) -> None:
            if entry in self._streams:
                self._streams.remove(entry)

        stream: Stream[Event] = Stream(buffer, Overflow(overflow), detach)
        entry = ((type, topic, data_type), stream)
        self._streams.append(entry)
        if self._state is State.CLOSED:
            stream.end()
        return stream

    def _deliver(self, event: Event) -> None:
        for (type, topic, data_type), stream in list(self._streams):
            if (type is not None and event.type != type) or (
                topic is not None and event.topic != topic
            ):
                continue
            if data_type is None:
                stream.push(event)
                continue
            try:
                data = self._converter.structure(event.data, data_type)
            except Exception as exc:
                logger.warning(
                    "%s: event %r skipped: its data does not match %r: %s",
                    self.url,
                    event.type,
                    data_type,
                    describe_error(exc, data_type),
                )
                continue
            stream.push(attrs.evolve(event, data=data))

    # -- the connection's tasks ------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        ws = link.ws
        try:
            while True:
                message = await ws.get_message()
                self._receive(message, link.binary)
        except trio_websocket.ConnectionClosed as closed:
            reason = closed.reason
            code = reason.code if reason is not None else _ABNORMAL
            link.end(int(code), (reason.reason if reason is not None else None) or "")

    def _receive(self, message: str | bytes, binary: bool) -> None:
        """One frame from the server, in msgpack if ``binary``, else in JSON. Never
        raises: what cannot be read is logged and dropped, so bad input never ends
        the connection."""
        try:
            frame = _codec.decode(message, binary)
        except _codec.Unreadable as unreadable:
            logger.warning("%s: %s", self.url, unreadable)
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            logger.warning("%s: dropped a frame that is not a message: %.80r", self.url, message)
            return
        if "ok" not in frame:
            if self._positions is not None:
                self._positions.observe(frame)
            topic, offset, epoch = frame.get("topic"), frame.get("offset"), frame.get("epoch")
            self._deliver(
                Event(
                    frame["type"],
                    topic if isinstance(topic, str) else None,
                    frame.get("data"),
                    offset if type(offset) is int else None,
                    epoch if isinstance(epoch, str) else None,
                )
            )
            return
        request_id = frame.get("id")
        pending = self._pending.get(request_id) if type(request_id) is int else None
        if pending is None:
            if type(request_id) is int and request_id in self._abandoned:
                del self._abandoned[request_id]
                return  # the reply to a request that timed out
            logger.warning("%s: dropped a reply to no pending request: %.120r", self.url, message)
            return
        if frame["ok"] is True:
            pending.settle(frame.get("data"))
            return
        error = frame.get("error")
        if not isinstance(error, dict):
            error = {}
        pending.settle(
            error=ClientHandlerError(
                frame["type"],
                str(error.get("code", "unknown")),
                str(error.get("message", "")),
                error.get("details"),
            )
        )

    async def _write(self, link: _Link) -> None:
        ws = link.ws
        try:
            async for frame in link.take:
                await ws.send_message(frame)
        except trio_websocket.ConnectionClosed:
            pass  # the reader reports why

    async def _ping(self, link: _Link) -> None:
        assert self._ping_interval is not None
        while True:
            await trio.sleep(self._ping_interval)
            with trio.move_on_after(self._ping_timeout) as scope:
                try:
                    await link.ws.ping()
                except trio_websocket.ConnectionClosed:
                    return
            if scope.cancelled_caught:
                logger.info("%s: no pong within %g s", self.url, self._ping_timeout)
                link.end(_ABNORMAL, "ping timeout")
                return

    # -- the supervisor ----------------------------------------------------------------------

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
            return _Ended(False, retry, _ABNORMAL, str(failure), error)
        except trio_websocket.ConnectionRejected as refused:
            status = refused.status_code
            body = bytes(refused.body or b"")
            text = body.decode(errors="replace").strip()
            error = ConnectError(
                f"{self.url} refused the connection: HTTP {status} {text}".strip(), status, body
            )
            retry = backoff is not None and backoff.retries_status(status)
            return _Ended(False, retry, _ABNORMAL, f"HTTP {status} {text}".strip(), error)
        except (trio_websocket.HandshakeError, OSError) as exc:
            error = ConnectError(f"could not connect to {self.url}: {exc}")
            return _Ended(False, True, _ABNORMAL, str(exc) or type(exc).__name__, error)
        except Exception as exc:
            # trio-websocket's reader can die on its own (issue #184: a ping that
            # arrives after this side's close frame): the connection is gone, as if
            # dropped, and the client goes on.
            if not self._closing:
                logger.warning("%s: the connection failed: %r", self.url, exc, exc_info=exc)
            return _Ended(self._opened, True, _ABNORMAL, "connection failed", None)
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
            link = _Link(ws, nursery.cancel_scope)
            self._link = link
            nursery.start_soon(self._read, link)
            nursery.start_soon(self._write, link)
            if self._ping_interval is not None:
                nursery.start_soon(self._ping, link)
            try:
                await self._replay(link)
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
                code, reason = link.closed or (_ABNORMAL, "")
                self._fail_pending(Disconnected, "the connection dropped", code, reason)
        code, reason = link.closed or (_ABNORMAL, "")
        return code, reason, opened

    async def _replay(self, link: _Link) -> None:
        """Make the recorded requests again, in order, before the client is open."""
        for key, replayed in list(self._replays.items()):
            try:
                with trio.fail_after(self._request_timeout):
                    await self._exchange(link, replayed.type, replayed.data)
            except (ClientHandlerError, trio.TooSlowError) as exc:
                error: ClientError = (
                    exc
                    if isinstance(exc, ClientHandlerError)
                    else RequestTimeout(f"no reply to the replayed {replayed.type!r}")
                )
                self._replays.pop(key, None)  # reported once, never retried forever
                try:
                    self._on_replay_error(error, replayed)
                except Exception:
                    logger.exception("on_replay_error failed")

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the client for good: pending requests fail with ClientClosed, event
        streams end, the connection is closed with ``code`` and ``reason``.

        Raises:
            ValueError: ``code`` is not 1000 or 3000-4999, or ``reason`` is longer
                than 123 bytes of UTF-8.
        """
        if code != 1000 and not 3000 <= code <= 4999:
            raise ValueError(f"a client closes with 1000 or 3000-4999, not {code}")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
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


def _log_replay_error(error: ClientError, replayed: Replayed) -> None:
    logger.warning(
        "replayed request %r failed and will not be replayed again: %s", replayed.type, error
    )


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
        ValueError: a position is not ``(offset, epoch)`` (an integer from 0 to 2^53
            and a string of 1 to 64 characters), or ``positions`` come with
            ``recover=False``.
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
