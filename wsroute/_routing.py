"""Routes and the handler table.

Everything about a handler is worked out once, when it is registered: which parameter
takes the payload and which take the connection (``_signatures``), the cattrs
structure hook for the payload and the unstructure hook for the result. Handling a
message is then a dict lookup and a call. Problems are raised here, at decoration
time, naming the fix.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Final

import attrs
import cattrs
import orjson
from cattrs.errors import StructureHandlerNotFoundError

from ._converter import describe_error
from ._declared import ErrorSpec, check_errors
from ._errors import RegistrationError
from ._protocol import ERROR_TYPE, MAX_TYPE_LENGTH, RESERVED_PREFIX
from ._signatures import (
    Caller,
    Values,
    describe,
    handler_slots,
    is_async,
    parameters,
    type_hints,
)

#: ``topic=`` of a broadcast route: a topic, or a function ``(payload, conn) -> topic``.
TopicSpec = str | Callable[[Any, Any], str]


class RouteKind(enum.Enum):
    """How a handler answers: to the sender, to a topic's subscribers, or to an info
    message sent from elsewhere in the system."""

    DIRECT = "direct"
    BROADCAST = "broadcast"
    INFO = "info"


@attrs.frozen
class RouteInfo:
    """A registered handler, as ``App.handlers`` lists it (for tools: ``wsroute
    routes``, schemas).

    Attributes:
        name: the message type.
        kind: direct, broadcast or info.
        fn: the handler function.
        payload_type: the payload's annotation; ``None`` when it takes no payload,
            ``Any`` for raw JSON.
        result_type: the return annotation (``Any`` when there is none).
        topic: a broadcast's topic, or the function that picks it; ``None`` otherwise.
        timeout: seconds it may run, or ``None``.
        coalesce: whether identical concurrent requests share a run (direct only).
        exclude_sender: whether a broadcast skips its sender.
        errors: the error codes it declares (``errors=``), each with what it means.
        coalesce_timeout: seconds a coalesced run may take, or ``None``.
        payload_default: whether the payload parameter has a default, so that a
            message may leave ``data`` out.
    """

    name: str
    kind: RouteKind
    fn: Callable[..., Awaitable[Any]]
    payload_type: Any
    result_type: Any
    topic: TopicSpec | None
    timeout: float | None
    coalesce: bool
    exclude_sender: bool
    errors: Mapping[str, str] = attrs.field(factory=dict)
    coalesce_timeout: float | None = None
    payload_default: bool = False


#: ``coalesce=`` of a direct route: ``True`` (key: the message data), or a function
#: ``(payload, conn) -> hashable`` giving the key.
CoalesceSpec = bool | Callable[[Any, Any], Hashable]


class InvalidData(Exception):
    """The payload does not match the handler's type; ``details`` lists each field."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__(details)
        self.details = details


_NO_DEFAULT: Final = object()
_NO_DATA: Final = [{"path": "$", "message": "this message type takes no data"}]


class Handler:
    """One registered ``direct`` or ``broadcast`` handler, with its hooks precomputed."""

    __slots__ = (
        "_caller",
        "_default",
        "_structure_hook",
        "call",
        "coalesce",
        "coalesce_timeout",
        "errors",
        "exclude_sender",
        "fn",
        "kind",
        "name",
        "payload_type",
        "result_type",
        "takes_payload",
        "timeout",
        "topic",
        "unstructure",
    )

    def __init__(
        self,
        name: str,
        kind: RouteKind,
        fn: Callable[..., Awaitable[Any]],
        converter: cattrs.Converter,
        topic: TopicSpec | None = None,
        timeout: float | None = None,
        *,
        values: Values,
        coalesce: CoalesceSpec = False,
        coalesce_timeout: float | None = None,
        exclude_sender: bool = False,
        errors: ErrorSpec = (),
    ) -> None:
        what = f"{kind.value} handler {name!r},"
        self.errors = check_errors(what, errors)
        for option, value in (("timeout", timeout), ("coalesce_timeout", coalesce_timeout)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise RegistrationError(f"{what} {option} must be a positive number of seconds")
        if not (isinstance(coalesce, bool) or callable(coalesce)):
            raise RegistrationError(
                f"{what} coalesce must be True, False or a function (payload, conn) -> key"
            )
        if coalesce is not False and kind is not RouteKind.DIRECT:
            raise RegistrationError(f"{what} only direct handlers can coalesce requests")
        if coalesce_timeout is not None and coalesce is False:
            raise RegistrationError(
                f"{what} coalesce_timeout needs coalesce=True or a key function"
            )
        params = parameters(fn, what)
        hints = type_hints(fn, what)
        slots, payload = handler_slots(params, hints, what, fn, values.connection)
        self.name = name
        self.kind = kind
        self.fn = fn
        self.topic = topic
        self.timeout = timeout
        self.coalesce = coalesce
        self.coalesce_timeout = coalesce_timeout
        self.exclude_sender = exclude_sender
        self._caller = Caller(fn, slots)
        #: ``call(payload, conn)``: the function, called with what it asks for.
        self.call: Callable[[Any, Any], Awaitable[Any]] = self._caller.bind_payload_conn()
        self.takes_payload = payload is not None
        self._default = (
            payload.default
            if payload is not None and payload.default is not payload.empty
            else _NO_DEFAULT
        )
        self.payload_type: Any = hints.get(payload.name, Any) if payload is not None else None
        if self.payload_type is object:
            self.payload_type = Any  # any JSON value, as it came
        self._structure_hook: Callable[[Any, Any], Any] | None = None
        if payload is not None and self.payload_type is not Any:
            try:
                self._structure_hook = converter.get_structure_hook(self.payload_type)
            except StructureHandlerNotFoundError as exc:
                raise RegistrationError(
                    f"{what} {describe(fn)}: payload type {self.payload_type!r} cannot be"
                    f" structured ({exc}). Use an attrs class, a dataclass, a primitive or a"
                    " container of those, or register a hook on the app's converter"
                    " (`app.converter.register_structure_hook`) before the handler."
                ) from None
        self.result_type: Any = hints.get("return", Any)
        if self.result_type in (Any, None, type(None)):
            self.unstructure: Callable[[Any], Any] = converter.unstructure
        else:
            self.unstructure = converter.get_unstructure_hook(self.result_type)

    def info(self) -> RouteInfo:
        return RouteInfo(
            name=self.name,
            kind=self.kind,
            fn=self.fn,
            payload_type=self.payload_type,
            result_type=self.result_type,
            topic=self.topic,
            timeout=self.timeout,
            coalesce=self.coalesce is not False,
            exclude_sender=self.exclude_sender,
            errors=self.errors,
            coalesce_timeout=self.coalesce_timeout,
            payload_default=self._default is not _NO_DEFAULT,
        )

    def structure(self, data: Any) -> Any:
        """Turn the frame's ``data`` into the handler's payload.

        Raises:
            InvalidData: with one detail entry per failing field.
        """
        if not self.takes_payload:
            if data is not None:
                raise InvalidData(_NO_DATA)
            return None
        if data is None and self._default is not _NO_DEFAULT:
            return self._default
        hook = self._structure_hook
        if hook is None:
            return data
        try:
            return hook(data, self.payload_type)
        except Exception as exc:
            raise InvalidData(describe_error(exc, self.payload_type)) from None

    def coalesce_key(self, data: Any, payload: Any, conn: Any) -> Hashable:
        """The key under which identical concurrent requests share one run."""
        if callable(self.coalesce):
            return (self.name, self.coalesce(payload, conn))
        return (self.name, orjson.dumps(data, option=orjson.OPT_SORT_KEYS))

    def topic_for(self, payload: Any, conn: Any) -> str:
        """The topic a broadcast's event goes to."""
        topic = self.topic
        if callable(topic):
            topic = topic(payload, conn)
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topic of broadcast {self.name!r} must be a non-empty string")
        return topic


class Route:
    """The handlers registered for one message type."""

    __slots__ = ("broadcast", "direct", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.direct: Handler | None = None
        self.broadcast: Handler | None = None


def check_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TYPE_LENGTH:
        raise RegistrationError(
            f"message type {name!r} must be a string of 1 to {MAX_TYPE_LENGTH} characters"
        )
    if name == ERROR_TYPE:
        raise RegistrationError(
            f"message type {ERROR_TYPE!r} is reserved for protocol error replies; pick another name"
        )
    if name.startswith(RESERVED_PREFIX):
        raise RegistrationError(
            f"message type {name!r}: names starting with {RESERVED_PREFIX!r} are reserved for"
            " the protocol's own messages; pick another name"
        )
    return name


def check_topic(name: str, topic: object) -> TopicSpec:
    if isinstance(topic, str):
        if not topic:
            raise RegistrationError(f"broadcast {name!r}: topic must not be empty")
        return topic
    if callable(topic):
        if is_async(topic):
            raise RegistrationError(
                f"broadcast {name!r}: the topic function {describe(topic)} must be a plain"
                " (non-async) function `(payload, conn) -> str`"
            )
        return typing.cast(TopicSpec, topic)
    raise RegistrationError(
        f"broadcast {name!r}: topic must be a string or a function `(payload, conn) -> str`,"
        f" not {type(topic).__name__}"
    )
