"""Local fan-out: which connections of this process hear which topic.

The hub subscribes a topic on the broker when its first local connection joins and
unsubscribes when the last one leaves, so a process only receives traffic for the
topics it hosts. Messages from the broker are decoded once and appended to every
member's outbox without waiting; the pump never blocks on a client. Messages that
skip their sender or carry control orders are described in ``_addressing``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import trio

from .._errors import BrokerError
from .._protocol import received_event
from .._wire.frames import Prepared
from .addressing import CONTROL, EXCLUDING, Control, decode_control

if TYPE_CHECKING:
    from ..brokers import BrokerSession

logger = logging.getLogger("wsroute")


class Member(Protocol):
    """What the hub needs of a connection (``connection.Connection`` is one): its id,
    its set of topics, and a way in for frames and control orders."""

    id: str
    _topics: set[str]

    def _push(self, frame: Prepared) -> None: ...

    def _control(self, control: Control) -> None: ...


class Hub:
    __slots__ = ("_broker", "_members")

    def __init__(self, broker: BrokerSession) -> None:
        self._broker = broker
        self._members: dict[str, set[Member]] = {}

    @property
    def subscribe_may_wait(self) -> bool:
        """Whether joining or leaving a topic may wait (see BrokerSession)."""
        return self._broker.subscribe_may_wait

    def subscribers(self, topic: str) -> int:
        """How many local connections are subscribed to ``topic``."""
        return len(self._members.get(topic, ()))

    async def subscribe(self, conn: Member, topic: str) -> None:
        await self.join(conn, (topic,))

    async def join(self, conn: Member, topics: Sequence[str]) -> None:
        """Subscribe ``conn`` to ``topics``, and the broker to those this process did
        not host yet, in one call. If the broker fails, ``conn`` joins none of them.

        Raises:
            ValueError: a topic is not a non-empty string.
            BrokerError: the broker refused.
        """
        for topic in topics:
            if not isinstance(topic, str) or not topic:
                raise ValueError("a topic must be a non-empty string")
        added: list[str] = []
        new: list[str] = []  # hosted by no connection of this process until now
        for topic in topics:
            if topic in conn._topics:
                continue
            conn._topics.add(topic)
            added.append(topic)
            members = self._members.get(topic)
            if members is None:
                self._members[topic] = {conn}
                new.append(topic)
            else:
                members.add(conn)
        if not new:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._broker.subscribe_many(new)
        except BaseException:
            for topic in added:
                conn._topics.discard(topic)
                self._forget(conn, topic)
            with trio.CancelScope(shield=True), contextlib.suppress(BrokerError):
                await self._broker.unsubscribe_many(new)  # those it did take, if any
            raise

    async def unsubscribe(self, conn: Member, topic: str) -> None:
        if topic in conn._topics:
            conn._topics.discard(topic)
            if self._forget(conn, topic):
                await self._broker.unsubscribe(topic)
                return
        await trio.lowlevel.checkpoint()

    def _forget(self, conn: Member, topic: str) -> bool:
        """Remove ``conn`` from ``topic``; return whether the topic became empty."""
        members = self._members.get(topic)
        if members is None:
            return False
        members.discard(conn)
        if members:
            return False
        del self._members[topic]
        return True

    async def leave(self, conn: Member) -> None:
        """Unsubscribe ``conn`` from everything; used when it ends, so never raises."""
        emptied = []
        for topic in conn._topics:
            if self._forget(conn, topic):
                emptied.append(topic)
        conn._topics.clear()
        if emptied:
            try:
                await self._broker.unsubscribe_many(emptied)
            except BrokerError as exc:
                logger.warning("could not unsubscribe topics %r from the broker: %s", emptied, exc)

    async def publish(self, topic: str, data: bytes) -> None:
        await self._broker.publish(topic, data)

    def deliver(self, topic: str, data: bytes) -> None:
        members = self._members.get(topic)
        if not members or not data:
            return
        kind = data[0]
        if kind == EXCLUDING:
            sender, _, rest = data[1:].partition(b"\n")
            frame = self._event(topic, rest)
            if frame is None:
                return
            sender_id = sender.decode()
            for conn in members:
                if conn.id != sender_id:
                    conn._push(frame)
        elif kind == CONTROL:
            try:
                control = decode_control(data)
            except ValueError as exc:
                logger.warning("dropped a message on topic %r: %s", topic, exc)
                return
            for conn in list(members):
                conn._control(control)
        else:
            frame = self._event(topic, data)  # framed once for every member
            if frame is None:
                return
            for conn in members:
                conn._push(frame)

    @staticmethod
    def _event(topic: str, data: bytes) -> Prepared | None:
        try:
            return received_event(data)
        except (ValueError, TypeError) as exc:  # only a bug elsewhere could send one
            logger.warning("dropped an event on topic %r that does not decode: %s", topic, exc)
            return None

    async def pump(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver everything the broker session yields until it ends."""
        task_status.started()
        async for topic, data in self._broker:
            self.deliver(topic, data)
