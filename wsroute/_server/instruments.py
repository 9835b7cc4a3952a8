"""The metrics wsroute keeps of itself, made once per app (docs/metrics.md lists them).

Each part of the server gets the children it counts when it is set up (the
dispatcher, one ``TypeMeter`` per message type; an outbox, its ``OutboxMeter``), so
that counting on the path of a message is an attribute increment. Labels come only
from what the app registered or from short fixed lists: a message type nobody
registered counts as ``unknown``, and close codes a client picks from the
application range (3000-4999) count by thousand (``3xxx``, ``4xxx``), so no client
can grow the set of samples. Error codes the app raises itself get labels up to
``MAX_APP_ERROR_CODES``, so that an app that builds codes from input cannot either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from .. import _protocol as protocol
from .._metrics import (
    Counter,
    CounterValue,
    Gauge,
    Histogram,
    HistogramValue,
    Metrics,
)

# Labels of their own for messages no route answers. The protocol reserves the prefix
# (``_routing.check_name``), so no route of the app can have the same label.
#: The ``type`` label of a message whose type no route has.
UNKNOWN: Final = "wsroute.unknown"
#: The ``type`` label of a frame that is not a valid message (bad JSON, no type).
INVALID: Final = "wsroute.invalid"
#: The ``type`` label of a frame for the app's frame handler.
FRAME: Final = "wsroute.frame"

#: wsroute's own error codes (docs/protocol.md): each always has a label.
BUILTIN_ERROR_CODES: Final = frozenset(
    {
        protocol.INVALID_JSON,
        protocol.INVALID_MSGPACK,
        protocol.INVALID_MESSAGE,
        protocol.UNKNOWN_TYPE,
        protocol.INVALID_DATA,
        protocol.INTERNAL_ERROR,
        protocol.OVERLOADED,
        protocol.BROKER_UNAVAILABLE,
        protocol.RATE_LIMITED,
        protocol.TIMEOUT,
        protocol.NO_PRESENCE,
        protocol.NOT_SUBSCRIBED,
    }
)
#: Distinct codes of the app's own ``HandlerError``s that get a label of their own;
#: codes first seen after that many count under ``OTHER_ERROR_CODE``.
MAX_APP_ERROR_CODES: Final = 100
OTHER_ERROR_CODE: Final = "other"


class TypeMeter:
    """What is counted of one message type: the time of each request dispatched, and
    the requests that were not (refused at the intake, or for a frame handler).

    Requests received are the two together: ``wsroute_messages_in_total`` reads them
    at scrape time, so a dispatched request costs one count, its histogram's.
    """

    __slots__ = ("latency", "untimed")

    def __init__(self, latency: HistogramValue, untimed: CounterValue) -> None:
        self.latency = latency
        self.untimed = untimed


class OutboxMeter:
    """What the outboxes count: frames dropped by the slow-consumer policy, and
    connections closed by it."""

    __slots__ = ("closes", "dropped")

    def __init__(self, dropped: CounterValue, closes: CounterValue) -> None:
        self.dropped = dropped
        self.closes = closes


class Instruments:
    """Every metric of one app, as children ready to count."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        m = metrics
        self.connections_open = Gauge(
            m, "wsroute_connections_open", "WebSocket connections open now."
        ).labels()
        self.connections_opened = Counter(
            m, "wsroute_connections_opened_total", "WebSocket connections accepted (101 sent)."
        ).labels()
        self._closed = Counter(
            m,
            "wsroute_connections_closed_total",
            "WebSocket connections ended, by close code and by which side closed first.",
            ("code", "initiator"),
        )
        self._closed_by: dict[tuple[int, str], CounterValue] = {}
        # Statuses are 400-599 (``Reject`` allows no others): a bounded label.
        self._refused = Counter(
            m,
            "wsroute_connections_refused_total",
            "WebSocket upgrade requests refused before the 101, by HTTP status.",
            ("status",),
        )
        self._messages_in = Counter(
            m,
            "wsroute_messages_in_total",
            "Client messages received, by message type (wsroute.unknown: no route has the"
            " type; wsroute.invalid: not a valid message).",
            ("type",),
        )
        messages_out = Counter(
            m,
            "wsroute_messages_out_total",
            "Messages queued for clients, by kind: replies, events, error replies.",
            ("kind",),
        )
        self.replies = messages_out.labels("reply")
        self.events = messages_out.labels("event")
        self._error_replies = messages_out.labels("error")
        self._handler_seconds = Histogram(
            m,
            "wsroute_handler_seconds",
            "Time from taking a request to having its answer, by message type.",
            ("type",),
        )
        self._errors = Counter(
            m, "wsroute_errors_total", "Error replies sent, by error code.", ("code",)
        )
        self._error_codes: dict[str, CounterValue] = {}  # bounded: see error()
        self._app_error_codes = 0
        self.outbox = OutboxMeter(
            Counter(
                m,
                "wsroute_outbox_dropped_total",
                "Frames discarded because a client's outbox was full (slow-consumer policy).",
            ).labels(),
            Counter(
                m,
                "wsroute_slow_consumer_closes_total",
                "Connections closed with 1008 because their outbox was full.",
            ).labels(),
        )
        self.broker_publish_seconds = Histogram(
            m,
            "wsroute_broker_publish_seconds",
            "Time for the broker to take a published message.",
        ).labels()
        self.broker_connected = Gauge(
            m, "wsroute_broker_connected", "1 while the broker is connected, else 0."
        ).labels()
        self.broker_disconnects = Counter(
            m, "wsroute_broker_disconnects_total", "Times the broker connection was lost."
        ).labels()
        self.broker_reconnects = Counter(
            m,
            "wsroute_broker_reconnects_total",
            "Times the broker connection came back after a loss.",
        ).labels()
        self.ping_timeouts = Counter(
            m,
            "wsroute_ping_timeouts_total",
            "Connections closed with 1011 because no pong came within ping_timeout.",
        ).labels()
        self.coalesce_runs = Counter(
            m,
            "wsroute_coalesce_runs_total",
            "Runs of coalescing handlers started (each answers one or more requests).",
        ).labels()
        self.coalesced = Counter(
            m,
            "wsroute_coalesced_requests_total",
            "Requests that joined a coalesced run already in progress.",
        ).labels()
        self._meters: dict[str, TypeMeter] = {}  # one per type label, for good
        self.unknown = self.meter(UNKNOWN)

    def meter(self, type: str) -> TypeMeter:
        meter = self._meters.get(type)
        if meter is None:
            latency = self._handler_seconds.labels(type)
            received = self._messages_in.labels(type)
            untimed = CounterValue()
            received.function = lambda: latency.count + untimed.value
            meter = self._meters[type] = TypeMeter(latency, untimed)
        return meter

    def meters(self, types: Iterable[str]) -> dict[str, TypeMeter]:
        """A meter per message type: the routes' and the protocol's own."""
        return {type: self.meter(type) for type in types}

    def received(self, type: str) -> None:
        """A message that no handler will run (refused, or not a valid message)."""
        self.meter(type).untimed.value += 1

    def error(self, code: str) -> None:
        """An error reply with ``code`` is being sent."""
        child = self._error_codes.get(code)
        if child is None:
            child = self._error_code(code)
        child.value += 1
        self._error_replies.value += 1

    def _error_code(self, code: str) -> CounterValue:
        """The child that counts ``code``: its own while there is room, else ``other``
        (not remembered, so the codes past the cap take no memory)."""
        if code not in BUILTIN_ERROR_CODES:
            if self._app_error_codes >= MAX_APP_ERROR_CODES:
                return self._errors.labels(OTHER_ERROR_CODE)
            self._app_error_codes += 1
        child = self._error_codes[code] = self._errors.labels(code)
        return child

    def refused(self, status: int) -> None:
        """An upgrade request is being refused with HTTP ``status``."""
        self._refused.labels(str(status)).value += 1

    def closed(self, code: int, initiator: str) -> None:
        """A connection ended with ``code``, closed first by ``initiator``."""
        child = self._closed_by.get((code, initiator))
        if child is None:
            if initiator == "client" and 3000 <= code <= 4999:
                label = f"{code // 1000}xxx"  # the client's choice: bounded
            else:
                label = str(code)
            # At most the 4,000-odd valid codes twice: one small dict.
            child = self._closed_by[code, initiator] = self._closed.labels(label, initiator)
        child.value += 1
        self.connections_open.value -= 1
