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

The same steps serve ``catchup``: connections that stayed open while this process
had lost the broker, recovered from the last position the hub delivered, with one
read shared by all of a topic's members at that position.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from .._errors import BrokerError
from .._history import History, Position
from .._protocol import decoded_event, received_event, recovery
from .._wire.frames import Prepared
from .addressing import EXCLUDING

if TYPE_CHECKING:
    from ..brokers import BrokerSession, HistoryPage

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
#: This process lost the broker before the connection got any event of the topic:
#: there is no position to read history from.
BROKER_LOST: Final = "broker_lost"


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
    """A topic's live events held for one recovering connection, and how far its
    recovery got.

    Once the recovery is over, it may stay as a ``floor``: history was read up to a
    position that the live events this process receives have not reached yet, so
    live copies of what the connection got from history may still be on their way.
    The hub drops those for the connection, and forgets the floor at the first live
    event past it."""

    __slots__ = ("floor", "frames", "limit", "overflowed", "sent")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Events in arrival order; ``None`` for one that skips this connection.
        self.frames: list[tuple[Position, Prepared | None]] = []
        self.overflowed = False
        #: The position of the last event the recovery sent (or skipped for being the
        #: connection's own): where the connection stands if it stops midway.
        self.sent: Position | None = None
        #: Where the connection stands once recovered, while live events lag behind.
        self.floor: Position | None = None

    def passes(self, position: Position) -> bool:
        """Whether a live event at ``position`` goes past the floor."""
        floor = self.floor
        return floor is None or position.epoch != floor.epoch or position.offset > floor.offset

    def add(self, position: Position, frame: Prepared | None) -> None:
        if self.overflowed:
            return
        if len(self.frames) >= self.limit:
            self.spoil()
            return
        self.frames.append((position, frame))

    def spoil(self) -> None:
        """Drop what is held and hold no more: the recovery reads history again
        instead of trusting the held events to follow what it sent."""
        self.overflowed = True
        self.frames.clear()

    def reset(self) -> None:
        self.frames.clear()
        self.overflowed = False


def no_history(topic: str) -> Prepared:
    """The answer to a position presented for a topic that keeps no history."""
    return recovery(topic, False, None, 0, NO_HISTORY)


def interrupted(topic: str) -> Prepared:
    """The answer when recovery was cancelled or failed midway."""
    return recovery(topic, False, None, 0, INTERRUPTED)


#: What a read of history gave: the page, or the error the broker raised.
Read: TypeAlias = "HistoryPage | BrokerError"


async def read(broker: BrokerSession, topic: str, history: History, since: Position | None) -> Read:
    """What follows ``since`` in ``topic``'s history; with ``None``, only where the
    topic stands. Several connections at the same position may share one read, if
    each held its live events from before it was sent."""
    try:
        if since is None:
            return await broker.read_history(topic, history, limit=0)
        return await broker.read_history(topic, history, since=since.offset)
    except BrokerError as exc:
        logger.warning("could not read the history of %r to recover: %s", topic, exc)
        return exc


async def recover(
    broker: BrokerSession,
    conn: Recipient,
    topic: str,
    history: History,
    since: Position | None,
    held: Held,
    first: Read | None = None,
) -> None:
    """Send ``conn`` what it missed on ``topic`` after ``since``, then the held
    events, then the ``wsroute.recovery`` event. With ``since`` None (where the
    connection stands is unknown) only the event, ``broker_lost``, with the topic's
    position. ``first`` is a read already made for ``since`` (shared with others);
    ``held`` must have held since before it was sent. Returns with nothing held: from
    then on the caller lets live events through; ``held.sent`` (else ``since``) is
    where the connection stands.

    Never raises for a gap or a broker failure: both are told to the client.
    """
    if since is None:
        page = first if first is not None else await read(broker, topic, history, None)
        if isinstance(page, BrokerError):
            await _give_up(conn, topic, held, None, 0, UNAVAILABLE)
        else:
            await _give_up(conn, topic, held, page.position, 0, BROKER_LOST)
        return
    last = since.offset
    missed = 0
    for _ in range(MAX_ROUNDS):
        if first is None:
            held.reset()  # what is published from here on is read below or held
            page = await read(broker, topic, history, Position(last, since.epoch))
        else:
            page, first = first, None
        if isinstance(page, BrokerError):
            await _give_up(conn, topic, held, None, missed, UNAVAILABLE)
            return
        reason = _unfilled(page, last, since.epoch)
        if reason is not None:
            await _give_up(conn, topic, held, page.position, missed, reason)
            return
        for message in page.messages:
            position = message.position
            if position is None:
                continue
            try:
                sender, kept = event_frame(message.data, position)
            except (ValueError, TypeError) as exc:
                logger.warning("skipped a kept event of %r that does not decode: %s", topic, exc)
            else:
                if sender != conn.id:
                    await conn._push_waiting([kept])
                    missed += 1
            last = position.offset
            held.sent = position
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
                held.sent = position
            held.reset()
            conn._push(recovery(topic, True, Position(last, since.epoch), missed, None))
            return
    await _give_up(conn, topic, held, Position(last, since.epoch), missed, BUSY)


def _unfilled(page: HistoryPage, last: int, epoch: str) -> str | None:
    """Why ``page``, read after offset ``last`` of ``epoch``, cannot fill the gap."""
    current = page.position
    if current.epoch != epoch:
        return EPOCH_CHANGED
    if current.offset < last:
        return UNKNOWN_OFFSET
    messages = page.messages
    first = messages[0].position.offset if messages and messages[0].position else None
    if (first if first is not None else current.offset + 1) != last + 1:
        return TOO_OLD
    return None


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
            pending = _after(held, current.offset, current.epoch) or []
        if not conn._fits(len(pending) + 1):
            await conn._wait_room(len(pending) + 1)
            continue
        conn._push(marker)
        if current is not None:
            held.sent = current
        for position, frame in pending:
            if frame is not None:
                conn._push(frame)
            held.sent = position
        held.reset()
        return
