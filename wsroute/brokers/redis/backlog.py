"""A Redis session's inbound backlog: between the link's reader, which must never
wait (a subscriber that stops reading makes Redis buffer, then disconnect it), and the
app's fan-out, which reads at its own pace.

Its policy is **drop until half**: when the backlog is full, incoming messages are
dropped until the consumer has drained it to half, so an overloaded consumer sees one
gap it can resync after, rather than a message missing here and there. Every drop is
counted (``dropped``) and logged, at most one line per ``DROP_LOG_INTERVAL``: a gap is
never silent. For a topic with history the consumer is also told where: once the
backlog is empty, one message per topic without data, at the position of the last
one dropped (``BrokerMessage``), from which the app reads the gap from history.
See docs/brokers.md, "The inbound backlog".
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from ..._history import Position
from .._base import BrokerMessage

logger = logging.getLogger("wsroute")

#: At most one "backlog full" log line per this many seconds.
DROP_LOG_INTERVAL: Final = 10.0
#: Messages the consumer takes in a row before it lets other tasks run. Each reader
#: puts one message per turn (a cluster session has one reader per shard); taking
#: one per turn too, the consumer would fall behind several of them however fast
#: it is.
BURST: Final = 64


class Backlog:
    """At most ``size`` messages waiting for the session's consumer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._send, self._receive = trio.open_memory_channel[BrokerMessage](size)
        self._overflowing = False
        self._last_drop_log = -DROP_LOG_INTERVAL
        #: Messages dropped because the backlog was full.
        self.dropped = 0
        # Per topic with history, the position of the last message dropped: told to
        # the consumer once the backlog is empty.
        self._missed: dict[str, Position] = {}
        self._in_a_row = 0

    def put(self, message: BrokerMessage) -> None:
        """Queue ``message``, or drop it by the policy; never blocks. After
        :meth:`close`, messages are discarded (the session is gone)."""
        if self._overflowing:
            used = self._send.statistics().current_buffer_used
            self._overflowing = used > self.size // 2
        if not self._overflowing:
            try:
                self._send.send_nowait(message)
                return
            except trio.WouldBlock:
                self._overflowing = True
            except trio.ClosedResourceError:
                return
        self.dropped += 1
        if message.position is not None:
            self._missed[message.topic] = message.position
        now = trio.current_time()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._last_drop_log = now
            logger.error(
                "Redis broker: the consumer fell %d messages behind; dropping messages until"
                " it catches up (%d dropped so far, latest on topic %r)",
                self.size,
                self.dropped,
                message.topic,
            )

    async def get(self) -> BrokerMessage:
        """The oldest message; waits for one. Takes up to ``BURST`` in a row without a
        schedule point; once the backlog is empty, the losses it has to tell first.

        Raises:
            StopAsyncIteration: the backlog is closed.
        """
        if self._in_a_row >= BURST:
            self._in_a_row = 0
            await trio.lowlevel.checkpoint()
        try:
            try:
                message = self._receive.receive_nowait()
            except trio.WouldBlock:
                pass
            else:
                self._in_a_row += 1
                return message
            self._in_a_row = 0
            if self._missed:
                await trio.lowlevel.checkpoint()
                topic, position = self._missed.popitem()
                return BrokerMessage(topic, b"", position)
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._send.close()
        self._receive.close()
