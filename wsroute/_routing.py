"""Routes and the handler table.

Everything about a handler is worked out once, when it is registered: which parameter
takes the payload and which take the connection, the cattrs structure hook for the
payload and the unstructure hook for the result. Handling a message is then a dict
lookup and a call. Problems are raised here, at decoration time, naming the fix.
"""

from __future__ import annotations

import enum
import inspect
import types
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


@attrs.frozen
class Values:
    """The classes of what the runtime passes to handlers and hooks besides the
    payload: the connection, and why it ended. The App names them; routing knows
    nothing of the server that makes them."""

    connection: type
    disconnect: type


class InvalidData(Exception):
    """The payload does not match the handler's type; ``details`` lists each field."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__(details)
        self.details = details


_NO_DEFAULT: Final = object()
_NO_DATA: Final = [{"path": "$", "message": "this message type takes no data"}]
_CONN: Final = "conn"
_PAYLOAD: Final = "payload"
_DISCONNECT: Final = "disconnect"


def describe(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function, for error messages."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}"


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def _hints(fn: Callable[..., Any], what: str) -> dict[str, Any]:
    # For an async callable object, the annotations live on its __call__ method.
    target = fn if inspect.isroutine(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    try:
        return typing.get_type_hints(target)
    except Exception as exc:
        raise RegistrationError(
            f"{what} {describe(fn)}: cannot resolve its annotations ({exc}). Define the"
            " types it names at module level, or import them outside `if TYPE_CHECKING`."
        ) from None


def _parameters(fn: Callable[..., Any], what: str) -> list[inspect.Parameter]:
    if not is_async(fn):
        name = getattr(fn, "__name__", "handler")
        raise RegistrationError(
            f"{what} {describe(fn)} must be an async function: write `async def {name}(...)`."
        )
    params = list(inspect.signature(fn).parameters.values())
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise RegistrationError(
                f"{what} {describe(fn)}: *args and **kwargs are not supported; declare at"
                " most one payload parameter and any parameter annotated `Connection`."
            )
    return params


#: ``typing.get_type_hints`` has no entry for an unannotated parameter.
_UNANNOTATED: Final = None


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives an annotation allows: a union's members, ``Annotated``'s
    type, or the annotation itself."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return tuple(m for arg in typing.get_args(annotation) for m in _members(arg))
    return (annotation,)


def _names(annotation: Any, cls: type) -> bool:
    """Whether ``annotation`` names ``cls`` itself (or a subclass), alone or in a union:
    ``Connection``, ``Connection | None``, ``Optional[Disconnect]``."""
    return any(isinstance(m, type) and issubclass(m, cls) for m in _members(annotation))


def _admits(annotation: Any, cls: type) -> bool:
    """Whether a value of ``cls`` satisfies ``annotation``: none at all, ``Any``, a
    base class such as ``object``, or a union with one of those."""
    for member in _members(annotation):
        if member is _UNANNOTATED or member is Any:
            return True
        if isinstance(member, type):
            try:
                if issubclass(cls, member) or issubclass(member, cls):
                    return True
            except TypeError:  # e.g. a Protocol that is not runtime-checkable
                continue
    return False


def _handler_slots(
    params: list[inspect.Parameter],
    hints: dict[str, Any],
    what: str,
    fn: Callable[..., Any],
    connection: type,
) -> tuple[list[tuple[inspect.Parameter, str]], inspect.Parameter | None]:
    """Which parameter takes the payload and which the connection.

    A parameter whose annotation names ``Connection`` takes the connection. Of the
    others, one whose annotation a ``Connection`` cannot satisfy is the payload;
    loose ones (unannotated, ``Any``, ``object``) take the connection when the
    payload is that typed one, and the payload when they stand alone.
    """
    loose: list[inspect.Parameter] = []
    typed: list[inspect.Parameter] = []
    for param in params:
        annotation = hints.get(param.name, _UNANNOTATED)
        if _names(annotation, connection):
            continue
        (loose if _admits(annotation, connection) else typed).append(param)
    if len(typed) > 1:
        raise RegistrationError(
            f"{what} {describe(fn)}: more than one payload parameter ({typed[0].name!r}"
            f" and {typed[1].name!r}). A handler takes at most one payload; group the"
            " fields in an attrs class or dataclass, and annotate the connection"
            " parameter with `Connection`."
        )
    if not typed and len(loose) > 1:
        raise RegistrationError(
            f"{what} {describe(fn)}: cannot tell which of {loose[0].name!r} and"
            f" {loose[1].name!r} is the payload: annotate the connection parameter with"
            " `Connection` (and the payload with its type)."
        )
    payload = typed[0] if typed else (loose[0] if loose else None)
    slots = [(param, _PAYLOAD if param is payload else _CONN) for param in params]
    return slots, payload


class Caller:
    """Calls a function with arguments picked by slot (payload, conn, disconnect)."""

    __slots__ = ("_fn", "_keyword", "_positional")

    def __init__(
        self, fn: Callable[..., Awaitable[Any]], slots: list[tuple[inspect.Parameter, str]]
    ):
        self._fn = fn
        self._positional = tuple(s for p, s in slots if p.kind is not p.KEYWORD_ONLY)
        self._keyword = tuple((p.name, s) for p, s in slots if p.kind is p.KEYWORD_ONLY)

    def bind_payload_conn(self) -> Callable[[Any, Any], Awaitable[Any]]:
        """A function of ``(payload, conn)`` that calls ``fn`` with what it asks for;
        the common signatures without a dict per call (the request path)."""
        fn, positional = self._fn, self._positional
        if not self._keyword:
            if positional == (_PAYLOAD, _CONN):
                return fn
            if positional == (_PAYLOAD,):
                return lambda payload, conn: fn(payload)
            if positional == (_CONN,):
                return lambda payload, conn: fn(conn)
            if not positional:
                return lambda payload, conn: fn()
        return lambda payload, conn: self({_PAYLOAD: payload, _CONN: conn})

    def __call__(self, values: dict[str, Any]) -> Awaitable[Any]:
        args = [values[slot] for slot in self._positional]
        if self._keyword:
            return self._fn(*args, **{name: values[slot] for name, slot in self._keyword})
        return self._fn(*args)


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
        params = _parameters(fn, what)
        hints = _hints(fn, what)
        slots, payload = _handler_slots(params, hints, what, fn, values.connection)
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


class FrameHandler:
    """The low-level route: every frame, text or binary, unparsed."""

    __slots__ = ("_caller", "fn")

    def __init__(self, fn: Callable[..., Awaitable[Any]], *, values: Values) -> None:
        what = "frame handler"
        params = _parameters(fn, what)
        hints = _hints(fn, what)
        try:
            slots, _ = _handler_slots(params, hints, what, fn, values.connection)
        except RegistrationError as exc:
            raise RegistrationError(
                f"{exc} A frame handler takes (frame: str | bytes, conn: Connection)."
            ) from None
        self.fn = fn
        self._caller = Caller(fn, slots)

    def __call__(self, frame: str | bytes, conn: Any) -> Awaitable[Any]:
        return self._caller({_PAYLOAD: frame, _CONN: conn})


class Hook:
    """An ``on_connect`` / ``on_disconnect`` hook and how to call it."""

    __slots__ = ("_caller", "fn")

    def __init__(
        self, fn: Callable[..., Awaitable[Any]], what: str, *, values: Values, disconnect: bool
    ):
        params = _parameters(fn, what)
        hints = _hints(fn, what)
        kinds = {_CONN: values.connection}
        if disconnect:
            kinds[_DISCONNECT] = values.disconnect
        takes = "(conn: Connection, reason: Disconnect)" if disconnect else "(conn: Connection)"
        # A parameter that names one of the values takes it; the others take, in
        # order, a value not named elsewhere that their annotation admits.
        chosen: dict[str, str] = {}
        for param in params:
            annotation = hints.get(param.name, _UNANNOTATED)
            named = [slot for slot, cls in kinds.items() if _names(annotation, cls)]
            if len(named) == 1:
                chosen[param.name] = named[0]
        free = [slot for slot in kinds if slot not in chosen.values()]
        for param in params:
            if param.name in chosen:
                continue
            annotation = hints.get(param.name, _UNANNOTATED)
            fits = [slot for slot in free if _admits(annotation, kinds[slot])]
            if not fits:
                raise RegistrationError(
                    f"{what} {describe(fn)}: cannot tell what to pass as {param.name!r}."
                    f" The hook takes {takes}; each parameter is optional."
                )
            chosen[param.name] = fits[0]
            free.remove(fits[0])
        slots = [(param, chosen[param.name]) for param in params]
        self.fn = fn
        self._caller = Caller(fn, slots)

    def __call__(self, conn: Any, reason: Any = None) -> Awaitable[Any]:
        return self._caller({_CONN: conn, _DISCONNECT: reason})
