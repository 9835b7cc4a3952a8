"""One connection's intake: what the client sends, decoded and queued for the workers
that run its handlers.

The socket reader hands each complete message to :meth:`Intake.on_message`, which
decodes it and queues it (bounded; a full queue answers ``overloaded``) without ever
waiting, so pings and close frames keep being read while handlers run. Info messages
from elsewhere in the system share the queue, so an info handler runs in order with
the connection's requests, like a message in its mailbox. Up to ``max_concurrency``
workers run handlers; they start when something is queued, and a connection that
asked once gets no worker waiting for more.

The session (``session``) opens the intake once ``on_connect`` is done, closes it when
the connection closes (workers finish what is queued, then end) and, when the close
is not graceful, stops it (running handlers cancelled, queued items dropped).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple, Protocol

import trio

from .._errors import ProtocolError
from .._msgpack import SUBPROTOCOL as MSGPACK
from .._msgpack import decode as decode_msgpack
from .._protocol import (
    INTERNAL_ERROR,
    OVERLOADED,
    RATE_LIMITED,
    ClientMessage,
    decode,
)
from .._wire import closes
from .._wire.frames import Prepared
from .addressing import Control
from .connection import log_fields
from .limits import Verdict, Window

if TYPE_CHECKING:
    from .._config import Config
    from .._signatures import FrameHandler
    from .connection import Connection
    from .dispatch import Dispatcher

logger = logging.getLogger("wsroute")


class Context(Protocol):
    """What an intake needs of the serving it belongs to (a session's, ``ending.Context``,
    is one): the app's options and its handlers."""

    config: Config
    dispatcher: Dispatcher
    frame_handler: FrameHandler | None


class RawFrame(NamedTuple):
    """A frame for the app's frame handler, unparsed."""

    frame: str | bytes


# An intake item: a decoded request, an error reply already encoded, a raw frame, or
# an info message from elsewhere in the system.
_Item = ClientMessage | Prepared | RawFrame | Control


class Intake:
    __slots__ = (
        "_closed",
        "_done",
        "_idle",
        "_msgpack",
        "_open",
        "_queue",
        "_raw",
        "_taken",
        "_window",
        "_worker_scopes",
        "_workers",
        "conn",
        "finished",
        "rt",
    )

    def __init__(self, rt: Context, conn: Connection) -> None:
        self.rt = rt
        self.conn = conn
        self._queue: list[_Item] = []  # at most max_queued_requests long
        # Idle workers, and the running workers' scopes: created with the first worker
        # (most idle connections never get one).
        # Each idle worker waits on an Event of its own: the cheapest of trio's ways
        # to wait (a ParkingLot costs about 4% of a request).
        self._idle: list[trio.Event] | None = None
        self._workers = 0
        self._taken = 0  # items the workers took off the queue, all told
        self._worker_scopes: list[trio.CancelScope] | None = None  # a few at most
        self._open = False  # on_connect done: workers may start
        self._closed = False
        #: Closed, and every worker ended: for the graceful wind-down.
        self.finished = False
        self._done: trio.Event | None = None  # set once finished, if anyone waits
        self._raw = rt.frame_handler is not None
        # Messages in binary frames (wsroute.v1.msgpack), not in text frames.
        self._msgpack = conn.subprotocol == MSGPACK and not self._raw
        limit = rt.config.rate_limit
        self._window = Window(*limit) if limit is not None else None

    # -- called by the socket reader and by the rest of the system, never waits -------

    def on_message(self, message: str | bytes) -> None:
        if self._closed:
            return  # closing: what the client sends now is not read
        conn = self.conn
        item: _Item
        if self._raw:
            item = RawFrame(message)
        elif isinstance(message, bytes) is not self._msgpack:
            wrong = closes.TEXT_UNSUPPORTED if self._msgpack else closes.BINARY_UNSUPPORTED
            conn._request_close(*wrong, "server")
            self.close()
            return
        else:
            try:
                # The kind of frame matches the subprotocol (checked above).
                item = decode_msgpack(message) if isinstance(message, bytes) else decode(message)
            except ProtocolError as exc:
                conn._note_invalid()
                item = self.rt.dispatcher.invalid(exc)
        window = self._window
        if window is not None:
            verdict = window.hit(trio.current_time())
            # A frame handler's protocol has no error replies: close instead.
            if verdict is Verdict.ABUSIVE or (self._raw and verdict is Verdict.LIMITED):
                conn._request_close(*closes.RATE_LIMIT_EXCEEDED, "server")
                self.close()
                return
            if verdict is Verdict.LIMITED:
                assert not isinstance(item, RawFrame)
                conn._push(self._refusal(item, RATE_LIMITED, _RATE_LIMITED_MESSAGE))
                return
        if not self.enqueue(item):
            if isinstance(item, RawFrame):
                conn._request_close(*closes.OVERLOADED, "server")
                self.close()
                return
            conn._push(self._refusal(item, OVERLOADED, _OVERLOADED_MESSAGE))

    def _refusal(self, item: ClientMessage | Prepared, code: str, message: str) -> Prepared:
        """The error reply for a message that will not be handled."""
        if isinstance(item, Prepared):
            return item  # already an error reply: send it anyway, it is small
        return self.rt.dispatcher.refuse(item, code, message)

    def enqueue(self, item: _Item) -> bool:
        """Queue ``item`` for a worker; False when the queue is full or closed."""
        queue = self._queue
        if self._closed or len(queue) >= self.rt.config.max_queued_requests:
            return False
        queue.append(item)
        if self._idle:  # None or empty: no idle worker
            self._idle.pop().set()
        elif self._open and self._workers < self.rt.config.max_concurrency:
            self._spawn_worker()
        return True

    # -- opening and closing, by the session ----------------------------------------------

    def open(self) -> None:
        """``on_connect`` is done: workers may start, for what is queued already too."""
        self._open = True
        if self._queue:
            self._spawn_worker()

    def close(self) -> None:
        """Take no more items; workers finish what is queued, then end."""
        self._closed = True
        idle = self._idle
        while idle:
            idle.pop().set()
        if not self._workers:
            self._finish()

    def stop(self) -> None:
        """Cancel running handlers and drop queued items (not graceful)."""
        self.close()
        self._queue.clear()
        for scope in self._worker_scopes or ():
            scope.cancel()

    async def wait_finished(self) -> None:
        """Wait until closed and every worker has ended."""
        while not self.finished:
            if self._done is None:
                self._done = trio.Event()
            await self._done.wait()

    def _finish(self) -> None:
        self.finished = True
        if self._done is not None:
            self._done.set()
            self._done = None

    # -- the workers ----------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        nursery = self.conn._nursery
        assert nursery is not None
        if self._idle is None:
            self._idle = []
            self._worker_scopes = []
        self._workers += 1
        nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        conn, dispatcher, frames = self.conn, self.rt.dispatcher, self.rt.frame_handler
        queue, idle, scopes = self._queue, self._idle, self._worker_scopes
        assert idle is not None and scopes is not None
        scope = trio.CancelScope()
        scopes.append(scope)
        try:
            with scope:
                while True:
                    while not queue:
                        # After a connection's first request, its worker ends rather
                        # than wait: many connections ask once (a join, a fetch) and
                        # then only listen, and a waiting worker costs about 2.5 KiB.
                        # One that asked twice will likely ask again.
                        if self._closed or self._taken < 2:
                            return
                        wakeup = trio.Event()
                        idle.append(wakeup)
                        try:
                            await wakeup.wait()
                        finally:
                            if not wakeup.is_set():  # cancelled while idle
                                idle.remove(wakeup)
                    item = queue.pop(0)
                    self._taken += 1
                    frame: str | bytes | Prepared | None
                    if isinstance(item, Prepared):
                        frame = item  # an error reply, made by the intake
                    elif isinstance(item, RawFrame):
                        assert frames is not None
                        dispatcher.frames.untimed.value += 1
                        frame = await _handle_frame(frames, item.frame, conn)
                    elif isinstance(item, Control):
                        await dispatcher.dispatch_info(conn, item)
                        continue
                    else:
                        try:
                            frame = await dispatcher.dispatch(conn, item)
                        except Exception:
                            # dispatch() is the error boundary; this is the net below it.
                            logger.exception(
                                "wsroute bug while dispatching %r",
                                item.type,
                                extra=log_fields(conn),
                            )
                            frame = dispatcher.error_reply(
                                item.type, item.id, INTERNAL_ERROR, "internal error"
                            )
                    if frame is not None:
                        conn._push(frame)
        finally:
            scopes.remove(scope)
            self._workers -= 1
            if not self._workers and self._closed:
                self._finish()


_OVERLOADED_MESSAGE = "too many requests are waiting on this connection; slow down and retry"
_RATE_LIMITED_MESSAGE = "too many messages; slow down"


async def _handle_frame(
    handler: FrameHandler, frame: str | bytes, conn: Connection
) -> str | bytes | None:
    """Run the frame handler; it has no error replies, so failures close with 1011."""
    try:
        result = await handler(frame, conn)
    except Exception:
        logger.exception("frame handler failed on connection %s", conn.id, extra=log_fields(conn))
        conn._request_close(*closes.INTERNAL, "server")
        return None
    if result is not None and not isinstance(result, str | bytes):
        logger.error(
            "frame handler returned %s, not str, bytes or None",
            type(result).__name__,
            extra=log_fields(conn),
        )
        conn._request_close(*closes.INTERNAL, "server")
        return None
    return result
