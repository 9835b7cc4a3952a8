"""Per-connection message limits: fixed-window counters with named outcomes.

A fixed window (count resets every ``period`` seconds) costs two comparisons per
message, which matters on the hot path; its known weakness, up to twice the limit
across a window boundary, is acceptable for abuse control and documented.
"""

from __future__ import annotations

import enum


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
