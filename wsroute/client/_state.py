"""Where the client is in its life, and who is told when that changes.

The supervisor (``_supervisor``) moves the client from state to state; every move is
logged, pushed to the streams of ``Client.state_changes`` without waiting, and wakes
whoever waits for the next change (a request waiting for the client to be open).
"""

from __future__ import annotations

import enum
import logging
from typing import Any

import attrs
import trio

from ._streams import Overflow, Stream

logger = logging.getLogger("wsroute.client")


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


class StateBoard:
    """The current state, the streams of its changes, and the wake-up for the next."""

    __slots__ = ("_changed", "_streams", "_url", "current")

    def __init__(self, url: str) -> None:
        self._url = url  # for the log
        self.current = State.CONNECTING
        self._changed = trio.Event()
        self._streams: list[Stream[StateChange]] = []

    def enter(self, state: State, code: int | None, reason: str, **more: Any) -> bool:
        """Move to ``state`` and push the change to the streams; ``False`` (and nothing
        done) when the client is there already, ``RECONNECTING`` aside, which repeats
        with every attempt. Call :meth:`wake` once the move is complete."""
        if state is self.current and state is not State.RECONNECTING:
            return False
        self.current = state
        change = StateChange(state, code, reason, **more)
        logger.info(
            "%s: %s%s", self._url, state.value, "" if code is None else f" ({code} {reason})"
        )
        for stream in list(self._streams):
            stream.push(change)
        return True

    def wake(self) -> None:
        """Wake whoever waits for a change."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self) -> None:
        """Wait for the next :meth:`wake`."""
        await self._changed.wait()

    def stream(self, buffer: int) -> Stream[StateChange]:
        """A new stream of the changes from now on (ended at once once closed).

        Raises:
            ValueError: ``buffer`` is not an integer >= 1.
        """
        stream: Stream[StateChange] = Stream(buffer, Overflow.DROP_OLDEST, self._streams.remove)
        self._streams.append(stream)
        if self.current is State.CLOSED:
            stream.end()
        return stream

    def end_streams(self) -> None:
        """No more changes: each stream ends once its buffered ones are read."""
        for stream in list(self._streams):
            stream.end()
