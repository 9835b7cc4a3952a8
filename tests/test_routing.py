"""Routes and handlers (``wsroute._routing``): signatures are worked out at registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Optional

import attrs
import pytest

from wsroute import Connection, RegistrationError, make_converter
from wsroute._hook_registration import VALUES
from wsroute._routing import Handler, InvalidData, RouteKind, check_name, check_topic
from wsroute._signatures import describe


@attrs.define
class Item:
    id: int
    name: str = "x"


class Plain:
    """A class cattrs has no hook for."""

    def __init__(self, value: Any) -> None:
        self.value = value


CONN: Any = object()  # Handler.call only forwards the connection object


def handler(
    fn: Callable[..., Any], kind: RouteKind = RouteKind.DIRECT, topic: Any = None
) -> Handler:
    return Handler("t", kind, fn, make_converter(), topic, values=VALUES)


def registration_error(fn: Callable[..., Any], converter: Any = None) -> str:
    with pytest.raises(RegistrationError) as info:
        Handler("t", RouteKind.DIRECT, fn, converter or make_converter(), values=VALUES)
    return str(info.value)


# -- signatures ----------------------------------------------------------------------


async def test_payload_and_connection_in_either_order() -> None:
    async def conn_first(conn: Connection, msg: Item) -> Any:
        return ("conn_first", conn, msg)

    async def payload_first(msg: Item, conn: Connection) -> Any:
        return ("payload_first", conn, msg)

    for fn in (conn_first, payload_first):
        h = handler(fn)
        assert h.takes_payload
        assert h.payload_type is Item
        payload = h.structure({"id": 1, "name": "n"})
        assert payload == Item(1, "n")
        assert await h.call(payload, CONN) == (fn.__name__, CONN, Item(1, "n"))


async def test_keyword_only_parameters() -> None:
    async def kw(*, conn: Connection, msg: Item) -> Any:
        return conn, msg

    h = handler(kw)
    assert await h.call(Item(2), CONN) == (CONN, Item(2))


async def test_handler_with_only_a_connection() -> None:
    async def only_conn(conn: Connection) -> Any:
        return conn

    h = handler(only_conn)
    assert not h.takes_payload
    assert h.payload_type is None
    assert await h.call(h.structure(None), CONN) is CONN


async def test_handler_without_parameters() -> None:
    async def nothing() -> str:
        return "done"

    h = handler(nothing)
    assert await h.call(h.structure(None), CONN) == "done"


def test_non_async_function_is_rejected_suggesting_async_def() -> None:
    def sync(msg: Item) -> None: ...

    message = registration_error(sync)
    assert "async def sync(" in message
    assert describe(sync) in message


def test_lambda_is_rejected() -> None:
    assert "async" in registration_error(lambda msg: msg)


class AddOne:
    """An object with an async ``__call__``: ``_signatures.is_async`` accepts these."""

    async def __call__(self, msg: int) -> int:
        return msg + 1


async def test_async_callable_object_is_accepted() -> None:
    h = handler(AddOne())
    assert h.payload_type is int
    assert await h.call(h.structure(1), CONN) == 2


def test_more_than_one_payload_parameter_is_rejected() -> None:
    async def two(a: Item, b: int) -> None: ...

    message = registration_error(two)
    assert "'a' and 'b'" in message
    assert "attrs class or dataclass" in message
    assert "Connection" in message


def test_two_loose_parameters_are_ambiguous() -> None:
    async def untyped(msg, conn) -> None: ...  # type: ignore[no-untyped-def]

    async def loose(msg: Any, conn: object) -> None: ...

    for fn in (untyped, loose):
        message = registration_error(fn)
        assert "cannot tell which of 'msg' and 'conn' is the payload" in message
        assert "`Connection`" in message


async def conn_object(msg: Item, conn: object) -> Any:
    return msg, conn


async def conn_any(msg: Item, conn: Any) -> Any:
    return msg, conn


async def conn_unannotated(msg: Item, conn) -> Any:  # type: ignore[no-untyped-def]
    return msg, conn


async def conn_optional(conn: Connection | None, msg: Item) -> Any:
    return msg, conn


async def conn_optional_typing(conn: Optional[Connection], msg: Item) -> Any:  # noqa: UP045
    return msg, conn


async def conn_annotated(msg: Item, conn: Annotated[object, "the connection"]) -> Any:
    return msg, conn


LOOSE_CONN_HANDLERS = [
    conn_object,
    conn_any,
    conn_unannotated,
    conn_optional,
    conn_optional_typing,
    conn_annotated,
]


@pytest.mark.parametrize("fn", LOOSE_CONN_HANDLERS, ids=lambda fn: fn.__name__)
@pytest.mark.parametrize("kind", list(RouteKind), ids=lambda kind: kind.value)
async def test_connection_parameter_takes_any_annotation_a_connection_satisfies(
    fn: Callable[..., Any], kind: RouteKind
) -> None:
    h = handler(fn, kind, "room" if kind is RouteKind.BROADCAST else None)
    assert h.payload_type is Item
    assert await h.call(h.structure({"id": 3}), CONN) == (Item(3), CONN)


async def test_a_lone_loose_parameter_is_the_payload() -> None:
    async def echo(data: object) -> object:
        return data

    h = handler(echo)
    assert h.takes_payload
    assert h.payload_type is Any  # `object`: any JSON value, as it came
    assert await h.call(h.structure({"any": "json"}), CONN) == {"any": "json"}


def test_connection_parameter_with_an_impossible_annotation_is_a_payload() -> None:
    async def two(msg: Item, conn: int) -> None: ...

    assert "more than one payload parameter ('msg' and 'conn')" in registration_error(two)


@pytest.mark.parametrize("variadic", ["args", "kwargs"])
def test_star_args_and_kwargs_are_rejected(variadic: str) -> None:
    async def star_args(conn: Connection, *args: Any) -> None: ...

    async def star_kwargs(msg: Item, **kwargs: Any) -> None: ...

    message = registration_error(star_args if variadic == "args" else star_kwargs)
    assert "*args and **kwargs are not supported" in message


def test_unstructurable_payload_type_is_rejected_naming_the_hook() -> None:
    async def plain(msg: Plain) -> None: ...

    message = registration_error(plain)
    assert "Plain" in message
    assert "register_structure_hook" in message


def test_unstructurable_payload_works_once_a_hook_is_registered() -> None:
    async def plain(msg: Plain) -> None: ...

    converter = make_converter()
    converter.register_structure_hook(Plain, lambda value, _: Plain(value))
    h = Handler("t", RouteKind.DIRECT, plain, converter, values=VALUES)
    payload = h.structure({"k": 1})
    assert isinstance(payload, Plain)
    assert payload.value == {"k": 1}


def test_unresolvable_annotation_is_rejected() -> None:
    async def forward(msg: DoesNotExist) -> None: ...  # type: ignore[name-defined] # noqa: F821

    message = registration_error(forward)
    assert "DoesNotExist" in message
    assert "module level" in message


# -- structure -----------------------------------------------------------------------


def test_no_payload_handler_rejects_data() -> None:
    async def no_payload(conn: Connection) -> None: ...

    h = handler(no_payload)
    assert h.structure(None) is None
    for data in ({"x": 1}, 0, "", [], False):
        with pytest.raises(InvalidData) as info:
            h.structure(data)
        assert info.value.details == [{"path": "$", "message": "this message type takes no data"}]


@pytest.mark.parametrize("annotation", ["none", "Any"])
def test_raw_payload_passes_data_through(annotation: str) -> None:
    async def raw(data, conn: Connection) -> None: ...  # type: ignore[no-untyped-def]

    async def any_(data: Any) -> None: ...

    h = handler(raw if annotation == "none" else any_)
    assert h.takes_payload
    assert h.payload_type is Any
    value = {"anything": [1, "2", None, 3.5]}
    assert h.structure(value) is value
    assert h.structure(None) is None


def test_payload_default_is_used_when_data_is_null() -> None:
    default = Item(0, "default")

    async def with_default(msg: Item = default) -> None: ...

    async def int_default(n: int = 5) -> None: ...

    h = handler(with_default)
    assert h.structure(None) is default
    assert h.structure({"id": 1}) == Item(1)
    assert handler(int_default).structure(None) == 5
    assert handler(int_default).structure(7) == 7


def test_payload_without_default_rejects_null() -> None:
    async def needs_item(msg: Item) -> None: ...

    with pytest.raises(InvalidData) as info:
        handler(needs_item).structure(None)
    assert info.value.details == [{"path": "$", "message": "expected an object, got null"}]


def test_optional_payload_accepts_null() -> None:
    async def maybe(msg: Item | None) -> None: ...

    h = handler(maybe)
    assert h.structure(None) is None
    assert h.structure({"id": 4}) == Item(4)


def test_invalid_data_details_come_from_describe_error() -> None:
    async def items(msg: list[Item]) -> None: ...

    with pytest.raises(InvalidData) as info:
        handler(items).structure([{"id": 1}, {"id": "2", "extra": 0}, "x"])
    assert info.value.details == [
        {"path": "$[1].id", "message": "expected an integer, got string"},
        {"path": "$[1]", "message": "extra fields found (extra)"},
        {"path": "$[2]", "message": "expected an object, got string"},
    ]


def test_strict_primitive_payload() -> None:
    async def count(n: int) -> None: ...

    with pytest.raises(InvalidData) as info:
        handler(count).structure("1")
    assert info.value.details == [{"path": "$", "message": "expected an integer, got string"}]


def test_result_is_unstructured_with_the_return_annotation() -> None:
    async def typed() -> Item: ...  # type: ignore[empty-body]

    async def untyped():  # type: ignore[no-untyped-def]
        ...

    assert handler(typed).result_type is Item
    assert handler(typed).unstructure(Item(1)) == {"id": 1, "name": "x"}
    assert handler(untyped).unstructure([Item(2)]) == [{"id": 2, "name": "x"}]


# -- topics --------------------------------------------------------------------------


async def noop(msg: Item, conn: Connection) -> None: ...


def test_topic_for_a_string() -> None:
    h = handler(noop, RouteKind.BROADCAST, "room")
    assert h.topic_for(Item(1), CONN) == "room"


def test_topic_for_a_callable_gets_payload_and_connection() -> None:
    seen = []

    def topic(payload: Item, conn: Connection) -> str:
        seen.append((payload, conn))
        return f"room:{payload.id}"

    h = handler(noop, RouteKind.BROADCAST, topic)
    assert h.topic_for(Item(3), CONN) == "room:3"
    assert seen == [(Item(3), CONN)]


@pytest.mark.parametrize("result", [None, 3, b"room", ""])
def test_topic_callable_returning_a_non_string_raises_type_error(result: Any) -> None:
    h = handler(noop, RouteKind.BROADCAST, lambda payload, conn: result)
    with pytest.raises(TypeError, match="non-empty string"):
        h.topic_for(Item(1), CONN)


def test_check_topic_accepts_strings_and_plain_functions() -> None:
    def fn(payload: Any, conn: Connection) -> str:
        return "x"

    assert check_topic("b", "room") == "room"
    assert check_topic("b", fn) is fn


@pytest.mark.parametrize("topic", [3, None, b"room", ["room"]])
def test_check_topic_rejects_non_string_non_callable(topic: Any) -> None:
    with pytest.raises(RegistrationError, match="topic must be a string or a function"):
        check_topic("b", topic)


def test_check_topic_rejects_empty_string() -> None:
    with pytest.raises(RegistrationError, match="must not be empty"):
        check_topic("b", "")


def test_check_topic_rejects_async_function() -> None:
    async def topic(payload: Any, conn: Connection) -> str:
        return "x"

    with pytest.raises(RegistrationError, match=r"plain \(non-async\) function"):
        check_topic("b", topic)


# -- names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "t" * 128, "chat.send", "é"])
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "t" * 129, None, 1, b"name"])
def test_check_name_rejects_bad_names(name: Any) -> None:
    with pytest.raises(RegistrationError, match="1 to 128 characters"):
        check_name(name)


def test_check_name_rejects_reserved_error_type() -> None:
    with pytest.raises(RegistrationError, match=r"reserved.*pick another name"):
        check_name("error")
