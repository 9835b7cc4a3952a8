"""Requests matched to their replies by id.

A request waits for its reply in the table of pending requests; the reader settles it
with the reply's data or an error reply, and a dropped connection or the client's
close settles every pending one with an error at once, so none is left hanging. The
id of a request that timed out is kept for a while, so that its late reply is dropped
without a warning.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from typing import Any

import trio

from .._errors import ClientError, ClientHandlerError, Disconnected
from . import _codec
from ._link import Link

logger = logging.getLogger("wsroute.client")

#: Ids of requests that timed out, whose late replies are dropped without a warning.
_ABANDONED = 4096


class _Pending:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: ClientError | None = None

    def settle(self, result: Any = None, error: ClientError | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


class Requests:
    """The requests waiting for their replies, across the client's connections."""

    __slots__ = ("_abandoned", "_ids", "_pending", "_url")

    def __init__(self, url: str) -> None:
        self._url = url  # for the log
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._abandoned: OrderedDict[int, None] = OrderedDict()

    async def exchange(self, link: Link, type: str, payload: Any) -> Any:
        """Send a request on ``link`` and return its reply's data.

        Raises:
            ClientHandlerError: the server answered with an error reply.
            Disconnected: the connection dropped (``ClientClosed``: the client closed)
                before the reply came.
        """
        request_id = next(self._ids)
        frame = _codec.encode(_codec.message(type, request_id, payload), link.binary)
        pending = self._pending[request_id] = _Pending()
        try:
            await link.send(frame)
            await pending.done.wait()
        finally:
            if self._pending.pop(request_id, None) is not None and not pending.done.is_set():
                self._abandon(request_id)  # cancelled: its reply may still come
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _abandon(self, request_id: int) -> None:
        self._abandoned[request_id] = None
        if len(self._abandoned) > _ABANDONED:
            self._abandoned.popitem(last=False)

    def reply(self, frame: dict[str, Any], message: str | bytes) -> None:
        """Settle the request that ``frame`` (a reply, decoded from ``message``)
        answers; a reply to no pending request is logged and dropped."""
        request_id = frame.get("id")
        pending = self._pending.get(request_id) if type(request_id) is int else None
        if pending is None:
            if type(request_id) is int and request_id in self._abandoned:
                del self._abandoned[request_id]
                return  # the reply to a request that timed out
            logger.warning("%s: dropped a reply to no pending request: %.120r", self._url, message)
            return
        if frame["ok"] is True:
            pending.settle(frame.get("data"))
            return
        error = frame.get("error")
        if not isinstance(error, dict):
            error = {}
        pending.settle(
            error=ClientHandlerError(
                frame["type"],
                str(error.get("code", "unknown")),
                str(error.get("message", "")),
                error.get("details"),
            )
        )

    def fail_all(self, kind: type[Disconnected], message: str, code: int, reason: str) -> None:
        """Settle every pending request with a ``kind`` error."""
        for pending in self._pending.values():
            pending.settle(error=kind(f"{message} ({code} {reason})".strip(), code, reason))
