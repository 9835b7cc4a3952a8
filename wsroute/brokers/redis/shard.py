"""One master of a cluster as the session sees it: the queue of its publishes, its
current link, and whether that link is up.

A cluster session (``shards.py``) keeps one :class:`Shard` per master, so that each
master's publishes queue apart and one shard down fails only its own. The loop that
keeps its link up is in ``shard_links.py``.
"""

from __future__ import annotations

import trio

from .link import Link
from .pending import Pending

#: The most publishes queued for one shard's publisher; further publishers wait.
PENDING_LIMIT = 4096


class Shard:
    """One master's queue and current link, and whether that link is up."""

    def __init__(self) -> None:
        self.queue, self.receiver = trio.open_memory_channel[Pending](PENDING_LIMIT)
        self.link: Link | None = None
        self.up = False
        #: Why its last attempt to link failed, if one did (at start: unreachable so).
        self.failure: str | None = None
        #: Set once its first link is up: a new master's, awaited by redirected publishes.
        self.linked = trio.Event()
        self.scope = trio.CancelScope()

    def fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                self.receiver.receive_nowait().finish(error)
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def close(self, error: BaseException) -> None:
        """End the shard for good: its link, its queue and what waits in it."""
        self.scope.cancel()
        if self.link is not None:
            self.link.fail(str(error))
        self.queue.close()
        self.fail_queued(error)
        self.receiver.close()
