"""Runs one client message against the handler table and produces its answer.

This is the one error boundary around user code: every ``Exception`` a handler
raises becomes an error reply (``HandlerError`` with its own code, anything else as
``internal_error``, logged with its traceback). ``BaseException`` such as trio's
``Cancelled`` passes through untouched so cancellation keeps working.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Mapping
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

import trio

from .._errors import BrokerError, ConnectionClosed, HandlerError, ProtocolError
from .._metrics import Metrics
from .._presence import stats
from .._protocol import (
    BROKER_UNAVAILABLE,
    INTERNAL_ERROR,
    INVALID_DATA,
    NO_PRESENCE,
    NOT_SUBSCRIBED,
    PRESENCE_REQUESTS,
    PRESENCE_STATS_TYPE,
    TIMEOUT,
    UNKNOWN_TYPE,
    ClientMessage,
    encode_event,
    error,
    protocol_error,
    reply,
)
from .._routing import Handler, InvalidData, Route
from .._wire.frames import Prepared
from .addressing import Control, encode_excluding
from .coalesce import CoalesceTimeout, SingleFlight
from .connection import log_fields
from .instruments import FRAME, INVALID, Instruments

if TYPE_CHECKING:
    from .connection import Connection
    from .hub import Hub

logger = logging.getLogger("wsroute")


class _ThrottledWarning:
    """Logs at most one warning per ``period``, with how many were held back: an
    outage must be visible in the logs without flooding them once per request."""

    def __init__(self, period: float = 10.0) -> None:
        self._period = period
        self._next = float("-inf")
        self._held = 0

    def warn(self, message: str, *args: object) -> None:
        now = trio.current_time()
        if now < self._next:
            self._held += 1
            return
        if self._held:
            message += f" ({self._held} more since the last warning)"
        logger.warning(message, *args)
        self._held = 0
        self._next = now + self._period


class _TimedOut(Exception):
    pass


async def _call(handler: Handler, payload: object, conn: Connection) -> Any:
    if handler.timeout is None:
        return await handler.call(payload, conn)
    with trio.move_on_after(handler.timeout):
        return await handler.call(payload, conn)
    raise _TimedOut


class Dispatcher:
    __slots__ = (
        "_broker_warnings",
        "_flights",
        "_hub",
        "_info",
        "_instruments",
        "_meters",
        "_replies",
        "_routes",
        "_unknown",
        "frames",
    )

    def __init__(
        self,
        routes: Mapping[str, Route],
        hub: Hub,
        info: Mapping[str, Handler],
        flights: SingleFlight,
        instruments: Instruments | None = None,
    ) -> None:
        self._routes = routes
        self._hub = hub
        self._info = info
        self._flights = flights
        self._broker_warnings = _ThrottledWarning()
        if instruments is None:
            instruments = Instruments(Metrics())
        self._instruments = instruments
        # A meter per type the app answers: the only types a label may name.
        self._meters = instruments.meters([*routes, *PRESENCE_REQUESTS])
        self._unknown = instruments.unknown
        self._replies = instruments.replies
        #: Frames for the app's frame handler (``type="frame"``).
        self.frames = instruments.meter(FRAME)

    def error_reply(
        self, type: str | None, id: int | str | None, code: str, message: str, details: Any = None
    ) -> Prepared:
        """An error reply, counted by its code."""
        self._instruments.error(code)
        return error(type, id, code, message, details)

    def refuse(self, msg: ClientMessage, code: str, message: str) -> Prepared:
        """The error reply for a request that will not be handled (rate limit, full
        queue), counted as received."""
        meter = self._meters.get(msg.type) or self._unknown
        meter.untimed.value += 1
        return self.error_reply(msg.type, msg.id, code, message)

    def invalid(self, exc: ProtocolError) -> Prepared:
        """The error reply for a frame that is not a valid message."""
        self._instruments.received(INVALID)
        self._instruments.error(exc.code)
        return protocol_error(exc)

    async def dispatch(self, conn: Connection, msg: ClientMessage) -> Prepared | None:
        """Handle ``msg`` from ``conn``; return the reply frame, or ``None`` for none.

        Timed by its type, which also counts it (one body, not a call, and the
        histogram's bucket found inline: this is every request's path).
        """
        latency = (self._meters.get(msg.type) or self._unknown).latency
        start = perf_counter()
        try:
            route = self._routes.get(msg.type)
            if route is None:
                if msg.type in PRESENCE_REQUESTS:
                    return await self._presence(conn, msg)
                conn._note_invalid()
                return self.error_reply(
                    msg.type, msg.id, UNKNOWN_TYPE, f"unknown message type {msg.type!r}"
                )
            handler: Handler | None = None
            publishing = False  # a BrokerError before this came from the handler's own calls
            try:
                handler = route.direct
                if handler is not None:
                    payload = handler.structure(msg.data)
                    if handler.coalesce is False:
                        result = await _call(handler, payload, conn)
                    else:
                        result = await self._flights.run(
                            handler.coalesce_key(msg.data, payload, conn),
                            partial(_call, handler, payload, conn),
                            handler.coalesce_timeout,
                        )
                    if result is not None or route.broadcast is None:
                        self._replies.value += 1
                        return reply(msg.type, msg.id, handler.unstructure(result))
                handler = route.broadcast
                assert handler is not None
                payload = handler.structure(msg.data)
                result = await _call(handler, payload, conn)
                data = None
                if result is not None:
                    data = handler.unstructure(result)
                    topic = handler.topic_for(payload, conn)
                    event = encode_event(msg.type, topic, data)
                    if handler.exclude_sender:
                        event = encode_excluding(conn.id, event)
                    publishing = True
                    await self._hub.publish_event(topic, event)
                if msg.id is None:
                    return None
                self._replies.value += 1
                return reply(msg.type, msg.id, data)
            except InvalidData as exc:
                conn._note_invalid()
                return self.error_reply(
                    msg.type,
                    msg.id,
                    INVALID_DATA,
                    "data does not match the message type",
                    exc.details,
                )
            except (_TimedOut, CoalesceTimeout):
                assert handler is not None
                logger.warning(
                    "handler %s for %r timed out on connection %s",
                    handler.fn.__qualname__,
                    msg.type,
                    conn.id,
                    extra=log_fields(conn),
                )
                return self.error_reply(
                    msg.type,
                    msg.id,
                    TIMEOUT,
                    "the handler did not finish in time",
                )
            except HandlerError as exc:
                return self.error_reply(msg.type, msg.id, exc.code, exc.message, exc.details)
            except ConnectionClosed:
                return None  # the client is going away; there is nobody to answer
            except BrokerError as exc:
                if publishing:
                    self._broker_warnings.warn(
                        "broadcasts could not be published (e.g. %r): %s", msg.type, exc
                    )
                    text = "the broadcast could not be published"
                else:  # conn.subscribe, app.publish, app.history, ... in the handler
                    assert handler is not None
                    self._broker_warnings.warn(
                        "handlers could not reach the broker (e.g. %s for %r): %s",
                        handler.fn.__qualname__,
                        msg.type,
                        exc,
                    )
                    text = "the broker is unavailable"
                return self.error_reply(msg.type, msg.id, BROKER_UNAVAILABLE, text)
            except Exception:
                where = handler.fn.__qualname__ if handler is not None else "?"
                logger.exception(
                    "handler %s for %r failed on connection %s",
                    where,
                    msg.type,
                    conn.id,
                    extra=log_fields(conn),
                )
                return self.error_reply(msg.type, msg.id, INTERNAL_ERROR, "internal server error")
        finally:
            elapsed = perf_counter() - start
            latency.counts[bisect_left(latency.bounds, elapsed)] += 1
            latency.sum += elapsed

    async def _presence(self, conn: Connection, msg: ClientMessage) -> Prepared:
        """The protocol's presence requests: who is on a topic the connection is
        subscribed to (``wsroute.presence``), or how many (``wsroute.presence_stats``)."""
        topic = msg.data.get("topic") if isinstance(msg.data, dict) else None
        if not isinstance(topic, str) or set(msg.data) != {"topic"}:
            conn._note_invalid()
            return self.error_reply(
                msg.type, msg.id, INVALID_DATA, 'data must be {"topic": "<topic>"}'
            )
        keeper = self._hub.presence
        if keeper is None or not keeper.applies(topic):
            return self.error_reply(
                msg.type, msg.id, NO_PRESENCE, f"topic {topic!r} has no presence"
            )
        if topic not in conn.topics:
            return self.error_reply(
                msg.type, msg.id, NOT_SUBSCRIBED, f"this connection is not subscribed to {topic!r}"
            )
        try:
            entries = await keeper.entries(topic)
        except BrokerError as exc:
            self._broker_warnings.warn("presence could not be read: %s", exc)
            return self.error_reply(
                msg.type, msg.id, BROKER_UNAVAILABLE, "presence could not be read"
            )
        self._replies.value += 1
        if msg.type == PRESENCE_STATS_TYPE:
            connections, users = stats(entries)
            return reply(msg.type, msg.id, {"connections": connections, "users": users})
        return reply(msg.type, msg.id, entries)

    async def dispatch_info(self, conn: Connection, control: Control) -> None:
        """Run the info handler for ``control`` in ``conn``'s context. Nothing is sent
        to the client unless the handler sends it; failures are logged."""
        handler = self._info.get(control.type)
        if handler is None:
            logger.warning(
                "connection %s: no info handler for %r; message dropped",
                conn.id,
                control.type,
                extra=log_fields(conn),
            )
            return
        try:
            await _call(handler, handler.structure(control.data), conn)
        except ConnectionClosed:
            pass
        except InvalidData as exc:
            logger.warning(
                "info message %r for connection %s has invalid data: %s",
                control.type,
                conn.id,
                exc.details,
                extra=log_fields(conn),
            )
        except _TimedOut:
            logger.warning(
                "info handler %r timed out on connection %s",
                control.type,
                conn.id,
                extra=log_fields(conn),
            )
        except Exception:
            logger.exception(
                "info handler %r failed on connection %s",
                control.type,
                conn.id,
                extra=log_fields(conn),
            )
