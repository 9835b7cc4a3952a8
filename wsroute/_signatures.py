"""What a handler or hook takes, worked out once from its signature, and how to call it.

Which parameter takes the payload, which the connection and which why it ended is
decided when the function is registered, from its annotations; a call is then a
tuple of slots, or the function itself for the common signatures. Problems are raised
here, at decoration time, naming the fix.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from ._errors import RegistrationError


@attrs.frozen
class Values:
    """The classes of what the runtime passes to handlers and hooks besides the
    payload: the connection, and why it ended. The App names them; routing knows
    nothing of the server that makes them."""

    connection: type
    disconnect: type


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


def type_hints(fn: Callable[..., Any], what: str) -> dict[str, Any]:
    # For an async callable object, the annotations live on its __call__ method.
    target = fn if inspect.isroutine(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    try:
        return typing.get_type_hints(target)
    except Exception as exc:
        raise RegistrationError(
            f"{what} {describe(fn)}: cannot resolve its annotations ({exc}). Define the"
            " types it names at module level, or import them outside `if TYPE_CHECKING`."
        ) from None


def parameters(fn: Callable[..., Any], what: str) -> list[inspect.Parameter]:
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


def handler_slots(
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


def mistyped(fn: Callable[..., Any], param: inspect.Parameter, what: str, cls: type) -> str | None:
    """How ``fn``'s ``param`` is annotated ("takes 'x' annotated int"), if a value of
    ``cls``, which it is passed, does not satisfy the annotation; else None."""
    annotation = type_hints(fn, what).get(param.name, _UNANNOTATED)
    if _admits(annotation, cls):
        return None
    return f"takes {param.name!r} annotated {inspect.formatannotation(annotation)}"


def request_handler(
    fn: Callable[..., Awaitable[Any]], what: str, request: type
) -> Callable[[Any], Awaitable[Any]]:
    """``fn`` as a function of the request, for a plain GET route.

    A GET route takes the ``Request`` or nothing (docs/http.md): one parameter whose
    annotation a request satisfies (``Request``, none, ``Any``), else none. Anything
    else would be passed a request it does not expect, so it is refused here.

    Raises:
        RegistrationError: a sync function, more than one parameter, ``*args`` or
            ``**kwargs``, or a parameter annotated with another type.
    """
    name = getattr(fn, "__name__", "handler")
    fix = (
        f"write `async def {name}(request: Request) -> Response`, or `async def {name}()`;"
        " read query values from request.query"
    )
    if not is_async(fn):
        raise RegistrationError(f"{what}: {describe(fn)} must be an async function: {fix}")
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return lambda request: fn()
    if len(params) > 1:
        raise RegistrationError(
            f"{what}: {describe(fn)} takes at most one parameter, the Request: {fix}"
        )
    param = params[0]
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        raise RegistrationError(
            f"{what}: {describe(fn)}: *args and **kwargs are not supported; it is passed"
            f" one Request: {fix}"
        )
    if (annotated := mistyped(fn, param, what, request)) is not None:
        raise RegistrationError(
            f"{what}: {describe(fn)} {annotated}, but a GET route is passed only the Request: {fix}"
        )
    if param.kind is param.KEYWORD_ONLY:
        return lambda request: fn(**{param.name: request})
    return fn


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


class FrameHandler:
    """The low-level route: every frame, text or binary, unparsed."""

    __slots__ = ("_caller", "fn")

    def __init__(self, fn: Callable[..., Awaitable[Any]], *, values: Values) -> None:
        what = "frame handler"
        params = parameters(fn, what)
        hints = type_hints(fn, what)
        try:
            slots, _ = handler_slots(params, hints, what, fn, values.connection)
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
        params = parameters(fn, what)
        hints = type_hints(fn, what)
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
