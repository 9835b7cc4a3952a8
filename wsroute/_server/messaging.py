"""Pushing to topics, users and connections from anywhere, in every process.

A mixin of :class:`~wsroute.App`: each call encodes once and publishes through the
broker, so it reaches subscribers in every process that shares it (see
``_addressing`` for what travels on the topics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cattrs

from .._protocol import encode_event
from .addressing import conn_topic, encode_close, encode_info, user_topic
from .connection import check_close

if TYPE_CHECKING:
    from .runtime import Runtime


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
        await runtime.hub.publish(
            topic, encode_event(type, topic, self.converter.unstructure(data))
        )

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
