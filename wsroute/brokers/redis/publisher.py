"""A link's publisher: the pipeline that writes every handler's publishes to Redis.

Any number of handlers queue publishes (``pending.py``); one :class:`Publisher` per
link takes them off the queue and writes them as one pipeline (many ``PUBLISH``
commands in one write, one round trip), then completes each caller once Redis has
answered its command. Script calls (a :class:`~.pending.Call`: keeping or reading
history, presence) queue in the same line, so they keep their place among the
publishes.

This is the hot path of every publish, apart from the link's subscriptions
(``subscriptions.py``) and its lifetime (``link.py``), which ends the publisher with
the rest of the link when it reports that the connection can no longer be trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from coredis.commands import CommandRequest
from coredis.connection import BaseConnection
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import NoScriptError, RedisError, ResponseError

from .dialect import Dialect
from .failures import explain
from .pending import Call, Pending, Script, asking

#: The most publishes written as one pipeline, and their most bytes together.
MAX_BATCH = 512
MAX_BATCH_BYTES = 1 << 20


class Publisher:
    """Writes what the session queues on one publishing connection, in order.

    Args:
        pending: publishes and script calls queued by the session, consumed in order.
        publish_timeout: seconds Redis may take to answer one batch.
        dialect: classic or sharded pub/sub (which command publishes).
        fail: called with why the connection can no longer be trusted; ends the link.
    """

    def __init__(
        self,
        pending: trio.MemoryReceiveChannel[Pending],
        *,
        publish_timeout: float,
        dialect: Dialect,
        fail: Callable[[str], None],
    ) -> None:
        self._pending = pending
        self._publish_timeout = publish_timeout
        self._dialect = dialect
        self.fail = fail
        #: Scripts (by SHA1) that a SCRIPT LOAD sent on the publishing connection.
        self._loaded: set[bytes] = set()

    async def run(self, connection: BaseConnection) -> None:
        """Write queued publishes as pipelines, one batch in flight at a time.

        Everything queued while a batch is on its way goes out as the next batch, so
        the batch size grows with the load and a publish waits about one round trip.
        """
        batch: list[Pending] = []
        try:
            while True:
                batch = self._take_batch(await self._pending.receive())
                if batch and (reason := await self._send(connection, batch)) is not None:
                    self.fail(reason)
                    return
        finally:
            lost = RedisConnectionError("the connection to Redis was lost")
            for item in batch:
                item.finish(lost)

    async def _send(self, connection: BaseConnection, batch: list[Pending]) -> str | None:
        """Send ``batch`` as one pipeline and complete each item.

        A script not yet loaded on this connection is loaded by a ``SCRIPT LOAD``
        just before its first ``EVALSHA``, in the same pipeline: Redis runs them in
        order, so no call meets ``NOSCRIPT`` and every command keeps its place. Only
        a script flushed from Redis meanwhile (``SCRIPT FLUSH``) does: that call is
        run again with ``EVAL``, after the rest of its batch. An item sent after an
        ``ASK`` redirection gets its ``ASKING`` right before it, after any load, as the
        node honours ``ASKING`` for the next command only.

        Returns why the connection can no longer be trusted, if it cannot.
        """
        commands: list[CommandRequest[Any]] = []
        # Per command, whose it is: a Script for its load, None for an ASKING.
        owners: list[Pending | Script | None] = []
        for item in batch:
            if isinstance(item, Call):
                sha = item.script.sha
                if sha not in self._loaded:
                    self._loaded.add(sha)
                    commands.append(item.script.load())
                    owners.append(item.script)
            if item.asking:  # right before its command: ASKING counts for one command
                commands.append(asking())
                owners.append(None)
            if isinstance(item, Call):
                commands.append(item.evaluate(loaded=True))
            else:
                commands.append(item.request(self._dialect.publish))
            owners.append(item)
        try:
            replies = await connection.create_request_batch(commands, timeout=self._publish_timeout)
        except RedisError as exc:
            return explain(exc)
        reason = None
        unloaded: list[Call] = []
        for owner, reply in zip(owners, replies, strict=True):
            if owner is None:  # ASKING: its command's reply tells what came of it
                continue
            if isinstance(owner, Script):
                if isinstance(reply, BaseException):  # its EVALSHA failed too: try again next time
                    self._loaded.discard(owner.sha)
            elif isinstance(reply, NoScriptError) and isinstance(owner, Call):
                self._loaded.discard(owner.script.sha)
                unloaded.append(owner)
            else:
                reason = self._complete(owner, reply) or reason
        for call in unloaded:
            if call.abandoned:  # its caller gave up: do not run it late
                call.finish(TimeoutError("the script was not run in time"))
                continue
            commands = [asking()] if call.asking else []
            commands.append(call.evaluate(loaded=False))
            try:
                *_, reply = await connection.create_request_batch(
                    commands, timeout=self._publish_timeout
                )
            except RedisError as exc:
                return explain(exc)
            reason = self._complete(call, reply) or reason
        return reason

    def _complete(self, item: Pending, reply: object) -> str | None:
        """Finish ``item`` with Redis' ``reply``; say why the connection is no longer
        trusted, if the reply means that."""
        if not isinstance(reply, BaseException):
            if isinstance(item, Call):
                item.reply = reply
            item.finish()
            return None
        item.finish(reply)
        if isinstance(reply, TimeoutError):
            return f"Redis did not answer within {self._publish_timeout:g} s"
        if not isinstance(reply, ResponseError):  # a refusal (e.g. ACL) fails only its item
            return explain(reply)
        return None

    def _take_batch(self, first: Pending) -> list[Pending]:
        """``first`` and whatever else is queued, up to the batch limits."""
        batch = [] if first.abandoned else [first]
        size = first.size
        while len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
            try:
                item = self._pending.receive_nowait()
            except trio.WouldBlock:
                break
            if not item.abandoned:
                batch.append(item)
                size += item.size
        return batch
