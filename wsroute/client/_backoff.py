"""When the client reconnects, and how long it waits first.

Exponential backoff with full jitter: before attempt ``n`` the client waits a random
time in ``[0, min(maximum, initial * factor ** (n - 1))]``. Spreading the waits over
the whole window keeps a fleet of clients that lost the same server from coming
back in one wave. A close or a refusal that means "go away" ends the client
instead: retrying would only be refused again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

import attrs

#: Close codes after which the client reconnects: the server went away or restarts
#: (1001, 1012), the connection broke (1006), the server failed or is overloaded
#: (1011, 1013, 1014). Every other code means the server closed on purpose (1000),
#: the client broke a rule (1002, 1003, 1007, 1008, 1009, 1010) or the app said so
#: (3000-4999): reconnecting would not help.
RETRY_CODES: Final = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
#: HTTP statuses of a refused handshake after which the client tries again: a
#: timeout (408), a rate limit (429), any server error (5xx; 503 while the server
#: drains). 400, 401, 403, 404 and the rest are final.
RETRY_STATUSES: Final = frozenset({408, 429, *range(500, 600)})


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"Backoff {attribute.name} must be a positive number, not {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
        raise ValueError(f"Backoff {attribute.name} must be a number >= 1, not {value!r}")


def _attempts(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"Backoff max_attempts must be an integer >= 1 or None, not {value!r}")


@attrs.frozen
class Backoff:
    """How the client reconnects.

    Args:
        initial: the first wait's upper bound, in seconds.
        maximum: the cap on any wait, in seconds.
        factor: how much the upper bound grows with each failed attempt.
        max_attempts: failed attempts in a row before the client gives up and is
            closed for good; ``None`` for no limit. An attempt that opens the
            connection resets the count.
        retry_codes: close codes after which the client reconnects.
        retry_statuses: HTTP statuses of a refused handshake after which it does.
    """

    initial: float = attrs.field(default=0.5, validator=_positive)
    maximum: float = attrs.field(default=30.0, validator=_positive)
    factor: float = attrs.field(default=2.0, validator=_at_least_one)
    max_attempts: int | None = attrs.field(default=None, validator=_attempts)
    retry_codes: frozenset[int] = attrs.field(default=RETRY_CODES, converter=frozenset)
    retry_statuses: frozenset[int] = attrs.field(default=RETRY_STATUSES, converter=frozenset)

    def delay(self, attempt: int, random: Callable[[], float] = random.random) -> float:
        """The wait before reconnect attempt ``attempt`` (1 for the first)."""
        try:
            bound = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        except OverflowError:  # long past the cap
            bound = self.maximum
        return random() * bound

    def retries_close(self, code: int) -> bool:
        """Whether a connection closed with ``code`` is reconnected."""
        return code in self.retry_codes

    def retries_status(self, status: int) -> bool:
        """Whether a handshake refused with HTTP ``status`` is tried again."""
        return status in self.retry_statuses

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts in a row exhaust the budget."""
        return self.max_attempts is not None and failures >= self.max_attempts
