"""When the client reconnects (``wsroute.client._backoff``)."""

from __future__ import annotations

from typing import Any

import pytest

from wsroute.client import RETRY_CODES, RETRY_STATUSES, Backoff


def test_the_upper_bound_grows_by_the_factor_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.5, maximum=30, factor=2)
    bounds = [backoff.delay(attempt, random=lambda: 1.0) for attempt in range(1, 10)]
    assert bounds == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay(10_000, random=lambda: 1.0) == 30  # no overflow far past the cap


def test_full_jitter_spreads_waits_over_the_whole_window() -> None:
    backoff = Backoff(initial=1, maximum=8)
    assert backoff.delay(4, random=lambda: 0.0) == 0
    assert backoff.delay(4, random=lambda: 0.25) == 2
    waits = [backoff.delay(3) for _ in range(2000)]
    assert all(0 <= wait <= 4 for wait in waits)
    assert min(waits) < 0.5 and max(waits) > 3.5  # the whole window, not a narrow band


def test_which_closes_and_refusals_are_retried() -> None:
    backoff = Backoff()
    for code in (1001, 1006, 1011, 1012, 1013, 1014):
        assert backoff.retries_close(code)
    for code in (1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 4000, 4999):
        assert not backoff.retries_close(code)
    for status in (408, 429, 500, 502, 503, 504):
        assert backoff.retries_status(status)
    for status in (400, 401, 403, 404, 426):
        assert not backoff.retries_status(status)
    assert Backoff(retry_codes={4000}).retries_close(4000)
    assert backoff.retry_codes == RETRY_CODES and backoff.retry_statuses == RETRY_STATUSES


def test_the_attempt_budget() -> None:
    assert not Backoff().gives_up(10**6)
    assert not Backoff(max_attempts=3).gives_up(2)
    assert Backoff(max_attempts=3).gives_up(3)


@pytest.mark.parametrize(
    "options",
    [
        {"initial": 0},
        {"maximum": -1},
        {"factor": 0.5},
        {"max_attempts": 0},
        {"max_attempts": True},
        {"initial": "1"},
    ],
)
def test_invalid_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**options)
