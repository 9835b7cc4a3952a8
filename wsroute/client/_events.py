"""Events from the server, handed to the streams that asked for them.

Each stream from ``Client.events`` has a filter: a type, a topic, and a data type to
structure the event's data into. The reader hands every event to each matching stream
without waiting (``_streams``); an event whose data does not match a stream's data
type is logged and skipped for that stream only.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import cattrs

from .._converter import describe_error
from ._streams import Overflow, Stream

logger = logging.getLogger("wsroute.client")


@attrs.frozen
class Event:
    """An event from the server: ``{"type", "topic"?, "data", "offset"?, "epoch"?}``;
    ``offset`` and ``epoch`` when its topic has history."""

    type: str
    topic: str | None
    data: Any
    offset: int | None = None
    epoch: str | None = None


_Filter = tuple[str | None, str | None, Any]  # type, topic, data type


class EventStreams:
    """The open event streams, each with its filter."""

    __slots__ = ("_converter", "_streams", "_url")

    def __init__(self, url: str, converter: cattrs.Converter) -> None:
        self._url = url  # for the log
        self._converter = converter
        self._streams: list[tuple[_Filter, Stream[Event]]] = []

    def open(
        self,
        type: str | None,
        topic: str | None,
        data_type: Any,
        buffer: int,
        overflow: Overflow | str,
    ) -> Stream[Event]:
        """A new stream of the events that match, from now on.

        Raises:
            ValueError: ``buffer`` is not an integer >= 1, or ``overflow`` no policy.
        """
        entry: tuple[_Filter, Stream[Event]]

        def detach(_: Stream[Event]) -> None:
            if entry in self._streams:
                self._streams.remove(entry)

        stream: Stream[Event] = Stream(buffer, Overflow(overflow), detach)
        entry = ((type, topic, data_type), stream)
        self._streams.append(entry)
        return stream

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to every stream that matches it; never waits."""
        for (type, topic, data_type), stream in list(self._streams):
            if (type is not None and event.type != type) or (
                topic is not None and event.topic != topic
            ):
                continue
            if data_type is None:
                stream.push(event)
                continue
            try:
                data = self._converter.structure(event.data, data_type)
            except Exception as exc:
                logger.warning(
                    "%s: event %r skipped: its data does not match %r: %s",
                    self._url,
                    event.type,
                    data_type,
                    describe_error(exc, data_type),
                )
                continue
            stream.push(attrs.evolve(event, data=data))

    def end(self) -> None:
        """No more events: each stream ends once its buffered events are read."""
        for _, stream in list(self._streams):
            stream.end()
