"""The :class:`Connection` handle that handlers and hooks receive."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from .._config import SlowConsumerPolicy
from .._errors import ConnectionClosed
from .._history import Position
from .._protocol import event
from .._proxy import format_address
from .._request import Request
from .._util import check_task
from .._wire import closes
from .._wire.frames import MAX_CLOSE_REASON, Outgoing
from .limits import Window
from .outbox import Outbox

if TYPE_CHECKING:
    from .addressing import Control
    from .hub import Hub
    from .instruments import OutboxMeter

logger = logging.getLogger("wsroute")


@attrs.frozen
class Disconnect:
    """Why a connection ended, passed to ``on_disconnect`` hooks.

    Attributes:
        code: the WebSocket close code (1006 when the client vanished without one).
        reason: the close reason text, possibly empty.
        initiator: ``"client"`` when the client closed or vanished, ``"server"`` when
            the app, a policy or shutdown closed it.
    """

    code: int
    reason: str
    initiator: Literal["client", "server"]


def check_close(code: int, reason: str) -> None:
    """Raise ``ValueError`` unless ``code`` and ``reason`` may be sent in a close frame."""
    if not closes.is_sendable(code):
        raise ValueError(
            f"close code {code} cannot be sent: use 1000-1003, 1007-1014, or an application"
            " code in 3000-4999"
        )
    if len(reason.encode()) > MAX_CLOSE_REASON:
        raise ValueError(f"close reason must be at most {MAX_CLOSE_REASON} bytes of UTF-8")


class Connection:
    """One client's WebSocket connection, as seen by application code.

    Attributes:
        id: unique among connections (random, URL-safe).
        user: what the accept hook returned for this connection (``None`` without one).
        subprotocol: the negotiated subprotocol, or ``None``.
        compression: the negotiated ``Sec-WebSocket-Extensions`` value, such as
            ``"permessage-deflate; server_no_context_takeover"``, or ``None`` when the
            connection is not compressed.
        user_id: the id derived from ``user`` (App option ``user_id``); the connection
            is subscribed to ``user:<user_id>``. ``None`` for anonymous connections.
        request: the upgrade request: path, query, headers, remote address.
        presence_meta: what its entries on topics with presence carry as ``meta``
            (JSON values, e.g. ``{"name": "Ann"}``): set it before subscribing.
        state: free-form per-connection attributes, e.g. ``conn.state.room = "lobby"``.
    """

    __slots__ = (
        "_disconnect",
        "_graceful",
        "_hub",
        "_info_sink",
        "_invalid",
        "_nursery",
        "_on_closing",
        "_outbox",
        "_recover",
        "_state",
        "_topics",
        "_unstructure",
        "compression",
        "id",
        "presence_meta",
        "request",
        "subprotocol",
        "user",
        "user_id",
    )

    def __init__(
        self,
        request: Request,
        *,
        hub: Hub,
        unstructure: Callable[[Any], Any],
        outbox_size: int,
        policy: SlowConsumerPolicy,
        user: Any = None,
        subprotocol: str | None = None,
        compression: str | None = None,
        invalid_limit: tuple[int, float] | None = None,
        user_id: str | None = None,
        recover: dict[str, Position] | None = None,
        outbox_meter: OutboxMeter | None = None,
    ) -> None:
        self.id = secrets.token_urlsafe(9)
        self.user = user
        self.user_id = user_id
        self.subprotocol = subprotocol
        self.compression = compression
        self._invalid = Window(*invalid_limit) if invalid_limit is not None else None
        self.request = request
        self._state: SimpleNamespace | None = None  # created when first used
        self._hub = hub
        self._unstructure = unstructure
        self._topics: set[str] = set()
        self._outbox = Outbox(outbox_size, policy, self._on_overflow, outbox_meter)
        self._nursery: trio.Nursery | None = None
        self._on_closing: Callable[[], None] | None = None  # the session's
        self._disconnect: Disconnect | None = None
        self._graceful = True
        self._info_sink: Callable[[Control], bool] | None = None
        # Positions the client presented (wsroute.recover), each used by the first
        # subscription to its topic.
        self._recover = recover
        #: What this connection's presence entries carry as ``meta`` (JSON values),
        #: set before it subscribes to a topic with presence.
        self.presence_meta: Any = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.request.path}>"

    @property
    def state(self) -> SimpleNamespace:
        if self._state is None:
            self._state = SimpleNamespace()
        return self._state

    @state.setter
    def state(self, value: SimpleNamespace) -> None:
        self._state = value

    @property
    def topics(self) -> frozenset[str]:
        """The topics this connection is subscribed to."""
        return frozenset(self._topics)

    @property
    def closing(self) -> bool:
        """Whether the connection is closing or closed."""
        return self._disconnect is not None

    async def send(self, type: str, data: Any = None) -> None:
        """Push an event ``{"type": type, "data": data}`` to this client only.

        Does not wait for the client: the frame is queued on the outbox.

        Raises:
            ConnectionClosed: the connection is closing and takes no more frames.
        """
        await trio.lowlevel.checkpoint()
        frame = event(type, None, self._unstructure(data))
        if self._outbox.put(frame):
            self._hub.events.value += 1
        elif self._outbox.closed:
            raise ConnectionClosed(f"connection {self.id} is closed")

    async def send_frame(self, frame: str | bytes) -> None:
        """Push a raw frame (text for ``str``, binary for ``bytes``), bypassing the
        JSON protocol; meant for apps with a frame handler.

        Raises:
            ConnectionClosed: the connection is closing and takes no more frames.
        """
        if not isinstance(frame, str | bytes):
            raise TypeError(f"a frame is str or bytes, not {type(frame).__name__}")
        await trio.lowlevel.checkpoint()
        if not self._outbox.put(frame) and self._outbox.closed:
            raise ConnectionClosed(f"connection {self.id} is closed")

    async def subscribe(self, topic: str) -> None:
        """Receive the events published to ``topic`` (idempotent).

        Returns once the broker delivers ``topic`` to this process, also when another
        connection's subscription of it was on its way (and, if that one failed, after
        subscribing it here).

        Raises:
            BrokerError: the broker refused; the connection did not join.
        """
        if self._disconnect is not None:
            raise ConnectionClosed(f"connection {self.id} is closed")
        await self._hub.subscribe(self, topic)

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``'s events (idempotent)."""
        await self._hub.unsubscribe(self, topic)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection.

        The connection stops taking requests, lets handlers in flight finish (within
        ``close_timeout``), delivers what they queued, then sends the close frame.
        Returns at once, so a handler may call it and still return its reply.

        Raises:
            ValueError: ``code`` may not be sent, or ``reason`` is too long.
        """
        check_close(code, reason)
        await trio.lowlevel.checkpoint()
        self._request_close(code, reason, "server")

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` for as long as this connection lives.

        The task is cancelled when the connection ends. If it raises, the error is
        logged and the connection is closed with 1011.

        Raises:
            TypeError: ``fn`` is not a function (a coroutine, say: ``start_soon(fn(x))``).
            ConnectionClosed: the connection is closing.
        """
        check_task("conn.start_soon", fn)
        if self._nursery is None or self._disconnect is not None:
            raise ConnectionClosed(f"connection {self.id} is not running")
        self._nursery.start_soon(self._guard, fn, args, name=getattr(fn, "__name__", None))

    async def _guard(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        except Exception:
            logger.exception("task %r of connection %s failed", fn, self.id, extra=log_fields(self))
            self._request_close(*closes.INTERNAL, "server")

    # -- runtime side --------------------------------------------------------------

    def _push(self, frame: Outgoing) -> None:
        self._outbox.put(frame)

    # Recovery sends more than the outbox may hold, and must lose none of it: it fills
    # at most half the outbox, waiting for the writer when it is that full, so that
    # replies and live events still have the other half.

    async def _push_waiting(self, frames: Iterable[Outgoing]) -> None:
        """Queue ``frames``, waiting for room: the slow-consumer policy never applies."""
        outbox = self._outbox
        half = outbox.maxsize // 2
        for frame in frames:
            if len(outbox) >= half:
                await outbox.wait_below(max(half - 1, 0))
            outbox.put(frame)

    def _fits(self, frames: int) -> bool:
        """Whether recovery may queue ``frames`` at once now: within its half, or all
        of them into an empty outbox. A closed outbox drops them all at once (waiting
        for room there would never wait, and loop)."""
        queued = len(self._outbox)
        return queued == 0 or queued + frames <= self._outbox.maxsize // 2 or self._outbox.closed

    async def _wait_room(self, frames: int) -> None:
        """Wait until ``frames`` fit in recovery's half (or the outbox is empty)."""
        await self._outbox.wait_below(max(self._outbox.maxsize // 2 - frames, 0))

    def _control(self, control: Control) -> None:
        """An order from elsewhere in the system (see ``_addressing``)."""
        if control.op == "close":
            self._request_close(control.code, control.reason, "server")
        elif self._info_sink is None or not self._info_sink(control):
            logger.warning(
                "connection %s: info message %r dropped (connection %s)",
                self.id,
                control.type,
                "closing" if self._disconnect else "busy: its request queue is full",
                extra=log_fields(self),
            )

    def _note_invalid(self) -> None:
        """Count an invalid frame against the budget; close with 1008 when spent.

        Frames queued before the close are still answered and counted: only the first
        to spend the budget, on a connection not closing yet, logs and closes.
        """
        if self._disconnect is not None:
            return
        if self._invalid is not None and self._invalid.exceeded(trio.current_time()):
            logger.info(
                "connection %s: too many invalid messages, closing", self.id, extra=log_fields(self)
            )
            self._request_close(*closes.TOO_MANY_INVALID, "server")

    def _request_close(
        self,
        code: int,
        reason: str,
        initiator: Literal["client", "server"],
        *,
        graceful: bool = True,
    ) -> None:
        """Record why the connection ends (the first reason wins) and wake its session."""
        if self._disconnect is None:
            # int(): trio-websocket hands over wsproto's CloseReason enum for known codes.
            self._disconnect = Disconnect(int(code), reason, initiator)
            self._graceful = graceful
            if self._on_closing is not None:
                self._on_closing()

    def _on_overflow(self) -> None:
        logger.warning(
            "connection %s: outbox full (%d frames), closing as slow consumer",
            self.id,
            self._outbox.maxsize,
            extra=log_fields(self),
        )
        # Graceful would mean waiting on a writer that cannot make progress.
        self._request_close(*closes.SLOW_CONSUMER, "server", graceful=False)


def log_fields(conn: Connection) -> dict[str, Any]:
    """What a log record about ``conn`` carries as ``extra=``, for JSON logs
    (``wsroute._logs``). The path has no query string, so no credential."""
    request = conn.request
    return {
        "connection_id": conn.id,
        "user": conn.user_id,
        "path": request.path,
        "remote": format_address(request.remote),
    }
