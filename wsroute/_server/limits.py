"""Rate limits as fixed-window counters: per connection for messages (with named
outcomes), per client address for upgrade requests.

A fixed window (count resets every ``period`` seconds) costs two comparisons per
message, which matters on the hot path; its known weakness, up to twice the limit
across a window boundary, is acceptable for abuse control and documented.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Final

#: At most this many client addresses have an upgrade-rate window at once.
MAX_TRACKED_ADDRESSES: Final = 65_536


class Verdict(enum.Enum):
    #: Within the limit.
    OK = "ok"
    #: Over the limit: answer the message with an error instead of handling it.
    LIMITED = "limited"
    #: Far over the limit (the client ignores the errors): close the connection.
    ABUSIVE = "abusive"


class Window:
    """Counts events in fixed windows of ``period`` seconds against ``limit``.

    ``hit`` returns OK up to ``limit`` events per window, LIMITED for the next
    ``limit`` (the client got errors and should slow down), then ABUSIVE.
    """

    __slots__ = ("_count", "_start", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._start = float("-inf")
        self._count = 0

    def hit(self, now: float) -> Verdict:
        if now - self._start >= self.period:
            self._start = now
            self._count = 0
        self._count += 1
        if self._count <= self.limit:
            return Verdict.OK
        if self._count <= 2 * self.limit:
            return Verdict.LIMITED
        return Verdict.ABUSIVE

    def exceeded(self, now: float) -> bool:
        """Count one event; whether the window now holds more than ``limit``."""
        return self.hit(now) is not Verdict.OK


class _Slot:
    __slots__ = ("count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 1


class AddressWindows:
    """Fixed windows of ``period`` seconds per client address, each allowing ``limit``
    events (``connect_rate_limit``: upgrade requests per address).

    Memory stays bounded. Windows are kept in the order they started, so those that
    have ended are at the front and are dropped by the next event, whoever sends it:
    an address that went quiet costs nothing after one period. Past
    ``max_addresses`` windows that have not ended, the oldest is forgotten to make
    room, so its address starts afresh: under a flood from more addresses than
    that within one period the limit holds only roughly, and no address is ever
    refused for want of room.
    """

    __slots__ = ("_windows", "limit", "max_addresses", "period")

    def __init__(
        self, limit: int, period: float, max_addresses: int = MAX_TRACKED_ADDRESSES
    ) -> None:
        self.limit = limit
        self.period = period
        self.max_addresses = max_addresses
        # OrderedDict: taking the first item is O(1), where a dict's first item sits
        # behind every deleted slot until the dict is resized.
        self._windows: OrderedDict[str, _Slot] = OrderedDict()

    def __len__(self) -> int:
        """The windows kept now (those ended may linger until the next event)."""
        return len(self._windows)

    def hit(self, address: str, now: float) -> float | None:
        """Count one event from ``address``: ``None`` within the limit, else the
        seconds until its window ends."""
        windows = self._windows
        ended = now - self.period
        while windows:
            first = next(iter(windows.values()))
            if first.start > ended:
                break
            windows.popitem(last=False)
        slot = windows.get(address)  # a window kept is one that has not ended
        if slot is None:
            if len(windows) >= self.max_addresses:
                windows.popitem(last=False)
            windows[address] = _Slot(now)
            return None  # limit >= 1
        slot.count += 1
        if slot.count <= self.limit:
            return None
        return slot.start + self.period - now
