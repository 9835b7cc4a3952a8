"""How one connection's session ends, whoever starts it.

Ending goes one way: the first reason is recorded on the connection, then

1. server-initiated and graceful: stop reading, let queued and running handlers
   finish, flush the outbox (all within the grace deadline);
2. send the close frame (within ``close_timeout``; the writer's current frame is
   never cut, because writes are serialised);
3. cancel the nursery; once it has ended, leave every topic and run
   ``on_disconnect`` hooks once, shielded, each under ``hook_timeout``.

A closing task starts only when there is something to wait for; a connection whose
peer closed first, the common end, is dropped without one.

:class:`Ending` is a mixin of :class:`~wsroute._server.session.Session` rather than
an object of its own, so that a connection's session stays one object, with no
indirection on the hot path of every message; ``Session.__init__`` sets the state
it uses. :class:`Context`, what a session needs of its serving, is here because
both halves need it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio

from .._wire import closes
from .connection import log_fields

if TYPE_CHECKING:
    from .._config import Config
    from .._signatures import FrameHandler, Hook
    from .connection import Connection
    from .dispatch import Dispatcher
    from .heartbeat import Handle, Heartbeat
    from .hub import Hub
    from .instruments import Instruments
    from .intake import Intake
    from .transport import Transport

logger = logging.getLogger("wsroute")


class Context(Protocol):
    """What a session needs of the serving it belongs to (``runtime.Runtime`` is
    one): the app's options, its handlers and hooks, the hub, the heartbeat."""

    config: Config
    dispatcher: Dispatcher
    instruments: Instruments
    hub: Hub
    heartbeat: Heartbeat | None
    frame_handler: FrameHandler | None
    on_connect: tuple[Hook, ...]
    on_disconnect: tuple[Hook, ...]


class Ending:
    """The closing task, the socket reader's end, and what runs once it is over."""

    # What ending changes (Session.__init__ sets them; starting changes _live too).
    __slots__ = ("_live", "_progress")

    # Set by Session.__init__; listed here for the type checker.
    _abandon: bool
    _beat: Handle | None
    _began: bool
    _deadline: float | None
    _intake: Intake
    _live: bool
    _progress: trio.Event | None
    _writer_finished: bool
    conn: Connection
    rt: Context
    ws: Transport

    def _closing_requested(self) -> None:
        """Called by the connection when the first reason to close is recorded."""
        if self._live:
            self._live = False
            conn = self.conn
            nursery = conn._nursery
            assert nursery is not None
            if conn._graceful or not self.ws.read_closed:
                nursery.start_soon(self._close)
                return
            # The peer closed, or the socket is gone, and the reader has sent all it
            # owed: what _close would do, without a task (most connections end so).
            self._drop_work()
            if nursery.child_tasks:
                # The app's tasks. Not the reader: it has done its part and ends by
                # itself, and a cancel costs trio a repr of the task, for its reason.
                nursery.cancel_scope.cancel()

    async def _close(self) -> None:
        await self._wind_down()
        await self._close_socket()
        nursery = self.conn._nursery
        assert nursery is not None
        nursery.cancel_scope.cancel()  # the app's tasks, and the socket reader

    async def finish(self) -> None:
        """The connection is over, whatever ended it: leave its topics and run its
        ``on_disconnect`` hooks. The caller shields it, unless nothing here can wait
        (``Streams._end_may_wait``: keep the two in step)."""
        self._live = False
        self.conn._outbox.detach()
        try:
            await self._finish(self._began)
        finally:
            self._release()

    def _release(self) -> None:
        """Break the links between the connection's objects (each holds the others'
        callbacks), so that reference counting frees them at once rather than the
        cyclic garbage collector later: some 60 objects a connection, and churn runs
        about 8% more cycles a second. Whatever still holds ``conn`` finds it closed:
        it takes no frames, tasks or info messages."""
        conn = self.conn
        conn._info_sink = conn._on_closing = None
        conn._outbox.release()
        self.ws.release()

    # -- the socket reader's end ------------------------------------------------------

    def _reader_ended(self) -> None:
        """The socket reader stopped: the peer closed or vanished, or this side failed
        the connection (an oversized message, 1009; a frame that breaks RFC 6455,
        1002 or 1007)."""
        ws = self.ws
        record = ws.closed
        code = record.code if record else closes.ABNORMAL
        text = record.reason if record else ""
        if ws.failed_locally:
            self.conn._request_close(code, text, "server", graceful=False)
        else:
            self.conn._request_close(code, text, "client", graceful=False)
        self._intake.close()

    def _made_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def _wait_progress(self) -> None:
        if self._progress is None:
            self._progress = trio.Event()
        await self._progress.wait()

    def _drop_work(self) -> None:
        """Not graceful: cancel running handlers, drop queued requests and frames."""
        self._intake.stop()
        self.conn._outbox.discard()

    # -- ending ---------------------------------------------------------------------

    async def _wind_down(self) -> None:
        conn = self.conn
        disconnect = conn._disconnect
        assert disconnect is not None
        if conn._graceful and disconnect.initiator == "server":
            deadline = self._deadline
            if deadline is None:
                deadline = trio.current_time() + self.rt.config.close_timeout
            with trio.move_on_at(deadline):
                self._intake.close()
                await self._intake.wait_finished()
                conn._outbox.close()
                while not self._writer_finished:
                    await self._wait_progress()
        self._drop_work()

    async def _close_socket(self) -> None:
        disconnect = self.conn._disconnect
        code, reason = closes.SHUTTING_DOWN
        if disconnect is not None and disconnect.initiator == "server":
            code, reason = disconnect.code, disconnect.reason
        with trio.move_on_after(self.rt.config.close_timeout):
            if self._abandon:
                await self.ws.abandon(code, reason)
            else:
                await self.ws.aclose(code, reason)
            await self.ws.wait_reader_done()

    async def _finish(self, began: bool) -> None:
        """Runs shielded: the connection is over, whatever ended it."""
        conn, rt = self.conn, self.rt
        conn._request_close(*closes.SHUTTING_DOWN, "server", graceful=False)
        conn._outbox.discard()
        if self._beat is not None and rt.heartbeat is not None:
            rt.heartbeat.forget(self._beat)
        await rt.hub.leave(conn)
        if self.ws.closed is None:  # cancelled from outside before closing
            await self._close_socket()
        if not began:
            return
        disconnect = conn._disconnect
        assert disconnect is not None
        for hook in rt.on_disconnect:
            with trio.move_on_after(rt.config.hook_timeout) as scope:
                try:
                    await hook(conn, disconnect)
                except Exception:
                    logger.exception(
                        "on_disconnect hook failed for connection %s",
                        conn.id,
                        extra=log_fields(conn),
                    )
            if scope.cancelled_caught:
                logger.warning(
                    "on_disconnect hook %s timed out for connection %s",
                    hook_name(hook),
                    conn.id,
                    extra=log_fields(conn),
                )


def hook_name(hook: Hook) -> str:
    return str(getattr(hook.fn, "__qualname__", hook.fn))
