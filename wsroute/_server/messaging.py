"""Pushing to topics, users and connections from anywhere, in every process.

A mixin of :class:`~wsroute.App`: each call encodes once and publishes through the
broker, so it reaches subscribers in every process that shares it (see
``_addressing`` for what travels on the topics).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import cattrs

from .._errors import PresenceUnsupported
from .._history import HistoryEvent, TopicHistory
from .._presence import PresenceEntry, PresenceStats
from .._protocol import encode_event
from .addressing import conn_topic, encode_close, encode_info, user_topic
from .connection import check_close
from .presence import PresenceKeeper
from .recovery import kept_event

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger("wsroute")


class Messaging:
    """``app.publish``, ``send_to_*``, ``disconnect_*`` and ``tell_*``."""

    converter: cattrs.Converter

    def _require_runtime(self, what: str) -> Runtime:
        raise NotImplementedError

    async def publish(self, topic: str, type: str, data: Any = None) -> None:
        """Send the event ``{"type", "topic", "data"}`` to every subscriber of ``topic``,
        in every process that shares the broker.

        Raises:
            NotRunningError: the app is not serving.
            BrokerError: the broker could not take the message.
        """
        runtime = self._require_runtime("app.publish()")
        await runtime.hub.publish_event(
            topic, encode_event(type, topic, self.converter.unstructure(data))
        )

    async def history(
        self, topic: str, *, since: int | None = None, limit: int | None = None
    ) -> TopicHistory:
        """The events kept of ``topic`` (``App(history=...)``), oldest first: with
        ``since``, those after that offset (at most ``limit``, the oldest of them);
        without, the newest ``limit`` (all that are kept when ``None``).

        Raises:
            NotRunningError: the app is not serving.
            HistoryUnsupported: the topic matches no pattern of ``App(history=...)``.
            BrokerError: the broker could not be read.
            ValueError: ``since`` or ``limit`` is not an integer >= 0.
        """
        for name, value in (("since", since), ("limit", limit)):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"app.history(): {name} must be an integer >= 0, not {value!r}")
        runtime = self._require_runtime("app.history()")
        page = await runtime.hub.read_history(topic, since=since, limit=limit)
        events = []
        for message in page.messages:
            if message.position is None:
                continue
            try:
                kept = kept_event(message.data)
            except ValueError as exc:
                logger.warning("skipped a kept event of %r that does not decode: %s", topic, exc)
                continue
            events.append(HistoryEvent(kept["type"], kept.get("data"), message.position.offset))
        return TopicHistory(page.position, events)

    async def presence(self, topic: str) -> list[PresenceEntry]:
        """Every connection on ``topic`` (``App(presence=...)``), in every process.

        Raises:
            NotRunningError: the app is not serving.
            PresenceUnsupported: the topic matches no pattern of ``App(presence=...)``.
            BrokerError: the broker could not be read.
        """
        return await self._keeper("app.presence()").members(topic)

    async def presence_stats(self, topic: str) -> PresenceStats:
        """How many connections, and distinct users, are on ``topic``, in every process.

        Raises:
            as ``presence``.
        """
        return await self._keeper("app.presence_stats()").stats(topic)

    def _keeper(self, what: str) -> PresenceKeeper:
        keeper = self._require_runtime(what).hub.presence
        if keeper is None:
            raise PresenceUnsupported(
                f"{what}: this app has no presence; name its topics with App(presence=...)"
            )
        return keeper

    async def _publish_raw(self, what: str, topic: str, data: bytes) -> None:
        await self._require_runtime(what).hub.publish(topic, data)

    async def send_to_user(self, user_id: object, type: str, data: Any = None) -> None:
        """Push the event ``{"type", "data"}`` to every connection of ``user_id``, in every
        process (all the user's tabs and devices)."""
        event = encode_event(type, None, self.converter.unstructure(data))
        await self._publish_raw("app.send_to_user()", user_topic(user_id), event)

    async def send_to_connection(self, conn_id: str, type: str, data: Any = None) -> None:
        """Push the event ``{"type", "data"}`` to connection ``conn_id``, wherever it is."""
        event = encode_event(type, None, self.converter.unstructure(data))
        await self._publish_raw("app.send_to_connection()", conn_topic(conn_id), event)

    async def disconnect_user(self, user_id: object, *, code: int = 1000, reason: str = "") -> None:
        """Close every connection of ``user_id`` in every process, gracefully, with
        ``code`` and ``reason``; their on_disconnect hooks run."""
        check_close(code, reason)
        await self._publish_raw(
            "app.disconnect_user()", user_topic(user_id), encode_close(code, reason)
        )

    async def disconnect_connection(
        self, conn_id: str, *, code: int = 1000, reason: str = ""
    ) -> None:
        """Close connection ``conn_id``, wherever it is, with ``code`` and ``reason``."""
        check_close(code, reason)
        await self._publish_raw(
            "app.disconnect_connection()", conn_topic(conn_id), encode_close(code, reason)
        )

    async def tell_user(self, user_id: object, type: str, data: Any = None) -> None:
        """Run info handler ``type`` on every connection of ``user_id``, in every process."""
        info = encode_info(type, self.converter.unstructure(data))
        await self._publish_raw("app.tell_user()", user_topic(user_id), info)

    async def tell_connection(self, conn_id: str, type: str, data: Any = None) -> None:
        """Run info handler ``type`` on connection ``conn_id``, wherever it is."""
        info = encode_info(type, self.converter.unstructure(data))
        await self._publish_raw("app.tell_connection()", conn_topic(conn_id), info)

    async def tell_topic(self, topic: str, type: str, data: Any = None) -> None:
        """Run info handler ``type`` on every connection subscribed to ``topic``."""
        info = encode_info(type, self.converter.unstructure(data))
        await self._publish_raw("app.tell_topic()", topic, info)
