"""The requests the client makes again on every reconnect (``replay=True``).

They are made again in the order first made, before the client is ``open``: that is
how the topics an app joins from its handlers come back after a server restart. Two
requests with the same type and data are one (``_codec.replay_key``). A replayed
request that fails is reported once and never made again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import trio

from .._errors import ClientError, ClientHandlerError, RequestTimeout
from . import _codec
from ._link import Link
from ._requests import Requests

logger = logging.getLogger("wsroute.client")


@attrs.frozen
class Replayed:
    """A request the client makes again on every reconnect."""

    type: str
    data: Any


class Replays:
    """The requests to make again, in the order first made."""

    __slots__ = ("_kept", "_on_error")

    def __init__(self, on_error: Callable[[ClientError, Replayed], Any] | None) -> None:
        self._kept: dict[bytes, Replayed] = {}
        self._on_error = on_error or _log_replay_error

    def __iter__(self) -> Iterator[Replayed]:
        return iter(list(self._kept.values()))

    def record(self, type: str, payload: Any) -> None:
        """Make ``type`` with ``payload`` again on every reconnect, unless it is
        already; ``payload`` as sent (unstructured).

        Raises:
            TypeError: ``payload`` cannot be written.
        """
        self._kept.setdefault(_codec.replay_key(type, payload), Replayed(type, payload))

    def forget(self, type: str, payload: Any = ...) -> None:
        """Stop replaying ``type`` requests with ``payload`` (all of them without)."""
        for key, replayed in list(self._kept.items()):
            if replayed.type == type and (payload is ... or replayed.data == payload):
                del self._kept[key]

    async def make_again(self, link: Link, requests: Requests, timeout: float) -> None:
        """Make the recorded requests again on ``link``, in order, each within
        ``timeout``; one that fails is reported and dropped."""
        for key, replayed in list(self._kept.items()):
            try:
                with trio.fail_after(timeout):
                    await requests.exchange(link, replayed.type, replayed.data)
            except (ClientHandlerError, trio.TooSlowError) as exc:
                error: ClientError = (
                    exc
                    if isinstance(exc, ClientHandlerError)
                    else RequestTimeout(f"no reply to the replayed {replayed.type!r}")
                )
                self._kept.pop(key, None)  # reported once, never retried forever
                try:
                    self._on_error(error, replayed)
                except Exception:
                    logger.exception("on_replay_error failed")


def _log_replay_error(error: ClientError, replayed: Replayed) -> None:
    logger.warning(
        "replayed request %r failed and will not be replayed again: %s", replayed.type, error
    )
