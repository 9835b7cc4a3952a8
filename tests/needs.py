"""Tests that need a part of the system the machine may lack (a redis-server with TLS,
Chromium, Node).

On a developer's machine such a test skips with the reason printed in pytest's
summary (``-ra``). In CI (``CI`` set, as ``.ci/run`` runs) the part is installed, so
a missing one is a failure: CI proves the test really ran.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing(reason: str) -> NoReturn:
    """Skip the calling test because ``reason``; fail it instead under CI."""
    if in_ci():
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)
