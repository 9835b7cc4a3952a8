"""The official Python client: requests matched to replies, events as streams,
reconnect with backoff, and replayed requests.

``connect`` (``_connect``) runs the client in a nursery of its own for the
``async with`` block. The :class:`Client` is the facade over its parts:

- the supervisor (``_supervisor``) opens the WebSocket, serves it until it ends, then
  reconnects per the :class:`Backoff` or gives up, and keeps the client's state
  (``_state``);
- for each open connection, in a nursery that ends with it: a reader (``_reader``)
  that hands replies to their requests (``_requests``) and events to their streams
  (``_events``) without ever waiting, a writer that sends queued frames whole and in
  order, so that a request cancelled by its timeout never cuts a frame in half, and,
  if asked, a pinger (``_link``).

Nothing outlives the block. A request that is pending when the connection drops
fails with :class:`Disconnected` at once; while the client reconnects, new requests
wait for it to be open again (within their timeout). Requests made with
``replay=True`` are made again, in their original order, on every reconnect before
the client is ``open`` (``_replays``): that is how the topics an app joins from its
handlers come back after a server restart.

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

import ssl
from collections.abc import Callable, Mapping
from typing import Any

import cattrs
import trio

from .._converter import describe_error, make_converter
from .._errors import ClientError, InvalidReply, RequestTimeout
from .._history import Position
from .._msgpack import SUBPROTOCOL as MSGPACK
from . import _codec
from ._backoff import Backoff
from ._events import Event, EventStreams
from ._positions import Positions
from ._replays import Replayed, Replays
from ._requests import Requests
from ._state import State, StateChange
from ._streams import Overflow, Stream
from ._supervisor import Supervisor, Token


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
        self._request_timeout = request_timeout
        self._converter = converter if converter is not None else make_converter()
        self._requests = Requests(url)
        self._events = EventStreams(url, self._converter)
        self._replays = Replays(on_replay_error)
        self._positions = Positions(positions) if recover else None
        self._supervisor = Supervisor(
            url,
            token=token,
            headers=headers,
            # msgpack is offered first; each connection speaks what the server selects.
            subprotocols=(
                (MSGPACK, *(name for name in subprotocols if name != MSGPACK))
                if msgpack
                else subprotocols
            ),
            reconnect=reconnect,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            close_timeout=close_timeout,
            max_message_size=max_message_size,
            ssl_context=ssl_context,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            requests=self._requests,
            events=self._events,
            replays=self._replays,
            positions=self._positions,
        )

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._supervisor.states.current

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server selected on the current (or last) connection."""
        return self._supervisor.subprotocol

    def state_changes(self, *, buffer: int = 100) -> Stream[StateChange]:
        """The state changes from now on, as an async iterator (oldest dropped when
        ``buffer`` are unread). Ends once the client is closed."""
        return self._supervisor.states.stream(buffer)

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
            link = await self._supervisor.wait_open()
            result = await self._requests.exchange(link, type, payload)
            if replay:
                self._replays.record(type, payload)
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
            link = await self._supervisor.wait_open()
            await link.send(_codec.encode(_codec.message(type, None, payload), link.binary))
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
        return list(self._replays)

    def forget_replay(self, type: str, data: Any = ...) -> None:
        """Stop replaying ``type`` requests with ``data`` (every one of ``type`` when
        ``data`` is not given)."""
        self._replays.forget(type, self._unstructure(data) if data is not ... else ...)

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
        stream = self._events.open(type, topic, data_type, buffer, overflow)
        if self.state is State.CLOSED:
            stream.end()
        return stream

    # -- life ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect: the client's life. Reports once first open.

        Raises:
            ConnectError: the first connection failed for good (before it opened).
        """
        await self._supervisor.run(task_status=task_status)

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
        await self._supervisor.close(code, reason)
