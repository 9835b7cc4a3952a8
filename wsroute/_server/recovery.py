"""Recovery: a client that comes back gets what it missed on a topic, then live events.

The client presents the last position it saw per topic (``wsroute.recover``, see
docs/history.md). When the app subscribes its connection to one of those topics,
the hub holds that topic's live events for the connection aside (``Held``), reads
the history after the position, sends it, then the held events that follow it, and
only then lets live events through: in order, with no duplicate and no gap at the
seam. A ``wsroute.recovery`` event then says so (``recovered: true``). When the gap
cannot be filled (the epoch changed, the position fell out of history, the topic
keeps none, the broker is unavailable) it says ``recovered: false`` with the
topic's current position, so the app can reload: never a silent partial recovery.

Held events are bounded (``outbox_size``): when more arrive while history is sent,
they are dropped and read again from history, which holds them too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

from .._errors import BrokerError
from .._history import History, Position
from .._protocol import decoded_event, received_event, recovery
from .._wire.frames import Prepared
from .addressing import EXCLUDING

if TYPE_CHECKING:
    from ..brokers import BrokerSession

logger = logging.getLogger("wsroute")

#: Reads of history before a recovery that cannot catch up with live events gives up.
MAX_ROUNDS: Final = 4

# Why a recovery failed (``reason`` of the wsroute.recovery event).
NO_HISTORY: Final = "no_history"
EPOCH_CHANGED: Final = "epoch_changed"
TOO_OLD: Final = "too_old"
UNKNOWN_OFFSET: Final = "unknown_offset"
UNAVAILABLE: Final = "unavailable"
BUSY: Final = "busy"
INTERRUPTED: Final = "interrupted"


class Recipient(Protocol):
    """What recovery needs of a connection."""

    id: str

    def _push(self, frame: Prepared) -> None: ...

    async def _push_waiting(self, frames: list[Prepared]) -> None: ...

    def _fits(self, frames: int) -> bool: ...

    async def _wait_room(self, frames: int) -> None: ...


def event_frame(data: bytes, position: Position | None) -> tuple[str | None, Prepared]:
    """A broker payload as the frame subscribers get, and the id of the connection it
    skips (its sender's), if it skips one.

    Raises:
        ValueError, TypeError: a payload that does not decode (a bug elsewhere).
    """
    if data[:1] == bytes([EXCLUDING]):
        sender, _, rest = data[1:].partition(b"\n")
        return sender.decode(), received_event(rest, position)
    return None, received_event(data, position)


def kept_event(data: bytes) -> dict[str, Any]:
    """The message of a kept broker payload, for ``app.history``.

    Raises:
        ValueError: a payload that does not decode to an event.
    """
    if data[:1] == bytes([EXCLUDING]):
        data = data[1:].partition(b"\n")[2]
    return decoded_event(data)


class Held:
    """A topic's live events held for one recovering connection."""

    __slots__ = ("frames", "limit", "overflowed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Events in arrival order; ``None`` for one that skips this connection.
        self.frames: list[tuple[Position, Prepared | None]] = []
        self.overflowed = False

    def add(self, position: Position, frame: Prepared | None) -> None:
        if self.overflowed:
            return
        if len(self.frames) >= self.limit:
            self.overflowed = True
            self.frames.clear()
            return
        self.frames.append((position, frame))

    def reset(self) -> None:
        self.frames.clear()
        self.overflowed = False


def no_history(topic: str) -> Prepared:
    """The answer to a position presented for a topic that keeps no history."""
    return recovery(topic, False, None, 0, NO_HISTORY)


def interrupted(topic: str) -> Prepared:
    """The answer when recovery was cancelled or failed midway."""
    return recovery(topic, False, None, 0, INTERRUPTED)


async def recover(
    broker: BrokerSession,
    conn: Recipient,
    topic: str,
    history: History,
    since: Position,
    held: Held,
) -> None:
    """Send ``conn`` what it missed on ``topic`` after ``since``, then the held
    events, then the ``wsroute.recovery`` event. Returns with nothing held: from then
    on the caller lets live events through.

    Never raises for a gap or a broker failure: both are told to the client.
    """
    last = since.offset
    missed = 0
    current = since
    for _ in range(MAX_ROUNDS):
        held.reset()  # what is published from here on is read below or held
        try:
            page = await broker.read_history(topic, history, since=last)
        except BrokerError as exc:
            logger.warning("could not read the history of %r to recover: %s", topic, exc)
            await _give_up(conn, topic, held, None, missed, UNAVAILABLE)
            return
        current = page.position
        if current.epoch != since.epoch:
            await _give_up(conn, topic, held, current, missed, EPOCH_CHANGED)
            return
        if current.offset < last:
            await _give_up(conn, topic, held, current, missed, UNKNOWN_OFFSET)
            return
        messages = page.messages
        first = messages[0].position.offset if messages and messages[0].position else None
        if (first if first is not None else current.offset + 1) != last + 1:
            await _give_up(conn, topic, held, current, missed, TOO_OLD)
            return
        frames: list[Prepared] = []
        for message in messages:
            if message.position is None:
                continue
            try:
                sender, kept = event_frame(message.data, message.position)
            except (ValueError, TypeError) as exc:
                logger.warning("skipped a kept event of %r that does not decode: %s", topic, exc)
            else:
                if sender != conn.id:
                    frames.append(kept)
            last = message.position.offset
        missed += len(frames)
        await conn._push_waiting(frames)
        # The held events, once there is room for all of them at once: from the check
        # of the seam to the end nothing waits, so no live event slips in between.
        while not held.overflowed:
            pending = _after(held, last, since.epoch)
            if pending is None:
                break  # a gap or another epoch among them: read history again
            if not conn._fits(len(pending) + 1):  # and the wsroute.recovery event
                await conn._wait_room(len(pending) + 1)
                continue
            for position, live in pending:
                if live is not None:
                    conn._push(live)
                    missed += 1
                last = position.offset
            held.reset()
            conn._push(recovery(topic, True, Position(last, since.epoch), missed, None))
            return
    await _give_up(conn, topic, held, Position(last, since.epoch), missed, BUSY)


def _after(held: Held, last: int, epoch: str) -> list[tuple[Position, Prepared | None]] | None:
    """The held events after offset ``last``, if they follow it without a gap."""
    pending = [(position, frame) for position, frame in held.frames if position.offset > last]
    expected = last + 1
    for position, _ in pending:
        if position.epoch != epoch or position.offset != expected:
            return None
        expected += 1
    return pending


async def _give_up(
    conn: Recipient,
    topic: str,
    held: Held,
    current: Position | None,
    missed: int,
    reason: str,
) -> None:
    """Say ``recovered: false`` with the topic's position, then send the held events
    that follow that position: the client's new start, from which it reloads. (Held
    events that overflowed or do not follow are not sent: the reload covers them.)"""
    marker = recovery(topic, False, current, missed, reason)
    while True:
        pending = []
        if current is not None and not held.overflowed:
            after = _after(held, current.offset, current.epoch) or []
            pending = [frame for _, frame in after if frame is not None]
        if not conn._fits(len(pending) + 1):
            await conn._wait_room(len(pending) + 1)
            continue
        conn._push(marker)
        for frame in pending:
            conn._push(frame)
        held.reset()
        return
