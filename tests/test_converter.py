"""The strict converter (``wsroute._converter``): JSON types must already be right."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, Optional

import attrs
import cattrs
import pytest

from wsroute import App, make_converter
from wsroute._converter import describe_error

from .wsclient import connect

CONVERTER = make_converter()


@attrs.define
class Item:
    id: int
    name: str = "x"


@attrs.define
class Order:
    items: list[Item]
    note: Optional[str] = None  # noqa: UP045 - the typing spelling is what is tested


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def errors(tp: Any, value: Any, converter: cattrs.Converter = CONVERTER) -> list[dict[str, str]]:
    """The ``describe_error`` details for a value the converter must reject."""
    try:
        result = converter.structure(value, tp)
    except Exception as exc:
        return describe_error(exc, tp)
    pytest.fail(f"{value!r} was accepted as {tp}: {result!r}")


def top(message: str) -> list[dict[str, str]]:
    return [{"path": "$", "message": message}]


def test_make_converter_returns_a_new_converter_each_time() -> None:
    assert isinstance(CONVERTER, cattrs.Converter)
    assert make_converter() is not make_converter()


@pytest.mark.parametrize(
    ("tp", "value", "message"),
    [
        (int, "1.9", "expected an integer, got string"),
        (int, "1", "expected an integer, got string"),
        (int, 1.9, "expected an integer, got number"),
        (int, 1.0, "expected an integer, got number"),
        (int, True, "expected an integer, got boolean"),
        (int, None, "expected an integer, got null"),
        (str, None, "expected a string, got null"),
        (str, 1, "expected a string, got number"),
        (str, ["a"], "expected a string, got array"),
        (bool, "no", "expected a boolean, got string"),
        (bool, 0, "expected a boolean, got number"),
        (float, True, "expected a number, got boolean"),
        (float, "1.5", "expected a number, got string"),
        (list[int], "12", "expected an array, got string"),
        (list[int], {"0": 1}, "expected an array, got object"),
        (list[int], None, "expected an array, got null"),
        (float, float("nan"), "expected a finite number"),
        (float, float("inf"), "expected a finite number"),
        (bytes, "not base64!", "expected base64 text"),
        (bytes, "AP8", "expected base64 text"),  # padding missing
        (bytes, 1, "expected base64 text or binary, got number"),
        (bytes, [0, 255], "expected base64 text or binary, got array"),
        (int, b"\x01", "expected an integer, got binary"),
    ],
)
def test_primitives_are_strict(tp: Any, value: Any, message: str) -> None:
    assert errors(tp, value) == top(message)


@pytest.mark.parametrize(
    ("tp", "value"),
    [(int, 3), (int, -(2**63)), (str, ""), (bool, False), (float, 2.5), (list[int], [1, 2])],
)
def test_primitives_of_the_right_json_type_pass(tp: Any, value: Any) -> None:
    result = CONVERTER.structure(value, tp)
    assert result == value
    assert type(result) is type(value)


def test_bytes_come_as_binary_or_base64_text_and_stay_bytes() -> None:
    """Binary under msgpack; JSON has none, so base64 text there."""
    assert CONVERTER.structure(b"\x00\xff", bytes) == b"\x00\xff"
    assert CONVERTER.structure("AP8=", bytes) == b"\x00\xff"
    assert CONVERTER.structure("", bytes) == b""
    assert CONVERTER.unstructure(b"\x00\xff") == b"\x00\xff"  # the encoder writes it


def test_int_widens_to_float() -> None:
    result = CONVERTER.structure(1, float)
    assert result == 1.0
    assert type(result) is float


def test_int_keys_are_read_from_json_strings() -> None:
    # JSON keys are strings; replies write int keys as strings (orjson's
    # OPT_NON_STR_KEYS), so a dict[int, X] must read them back.
    assert CONVERTER.structure({"1": "a", "-20": "b", "0": "c"}, dict[int, str]) == {
        1: "a",
        -20: "b",
        0: "c",
    }
    top_key = str(2**64 - 1)
    assert CONVERTER.structure({top_key: 1}, dict[int, int]) == {2**64 - 1: 1}


@pytest.mark.parametrize(
    "key",
    ["x", "", "01", "-0", "+1", " 1", "1 ", "1_000", "1.0", "1e3", str(2**64), str(-(2**63) - 1)],
)
def test_int_keys_must_be_integers_in_shortest_form(key: str) -> None:
    assert errors(dict[int, str], {key: "a"}) == [
        {"path": f"$[{key!r}]", "message": f'expected an integer key, got "{key}"'}
    ]


def test_int_key_and_value_errors_have_paths() -> None:
    @attrs.frozen
    class Scores:
        by_player: dict[int, int]

    assert errors(Scores, {"by_player": {"7": 1, "x": 2, "8": "3"}}) == [
        {"path": "$.by_player['x']", "message": 'expected an integer key, got "x"'},
        {"path": "$.by_player['8']", "message": "expected an integer, got string"},
    ]


@pytest.mark.parametrize(
    ("tp", "value", "got"),
    [
        (Item, [1], "array"),
        (Item, "x", "string"),
        (Item, None, "null"),
        (Point, "x", "string"),
        (Point, [1, 2], "array"),
        (dict[str, int], [1], "array"),
        (dict[str, int], "a", "string"),
    ],
)
def test_records_and_mappings_need_an_object(tp: Any, value: Any, got: str) -> None:
    assert errors(tp, value) == top(f"expected an object, got {got}")


def test_mapping_values_are_strict_with_paths() -> None:
    assert CONVERTER.structure({"a": 1}, dict[str, int]) == {"a": 1}
    assert errors(dict[str, int], {"a": 1, "b": "2", "c": True}) == [
        {"path": "$['b']", "message": "expected an integer, got string"},
        {"path": "$['c']", "message": "expected an integer, got boolean"},
    ]


@pytest.mark.parametrize(
    ("tp", "value"), [(Item, {"id": 1, "extra": 2}), (Point, {"x": 1, "z": 2})]
)
def test_extra_keys_are_forbidden_by_default(tp: Any, value: dict[str, Any]) -> None:
    extra = (set(value) - {"id", "x"}).pop()
    assert errors(tp, value) == top(f"extra fields found ({extra})")


def test_extra_keys_are_allowed_when_asked() -> None:
    lenient = make_converter(forbid_extra_keys=False)
    assert lenient.structure({"id": 1, "extra": 2}, Item) == Item(1)
    assert lenient.structure({"x": 1, "z": 2}, Point) == Point(1)
    # Still strict about types.
    assert errors(Item, {"id": "1", "extra": 2}, lenient) == [
        {"path": "$.id", "message": "expected an integer, got string"}
    ]


def test_missing_field() -> None:
    assert errors(Item, {"name": "n"}) == [{"path": "$.id", "message": "required field missing"}]
    assert errors(Point, {}) == [{"path": "$.x", "message": "required field missing"}]


def test_records_structure_with_defaults() -> None:
    assert CONVERTER.structure({"id": 1}, Item) == Item(1, "x")
    assert CONVERTER.structure({"x": 2, "y": 3}, Point) == Point(2, 3.0)


def test_optional() -> None:
    tp = Optional[int]  # noqa: UP045
    assert CONVERTER.structure(None, tp) is None
    assert CONVERTER.structure(3, tp) == 3
    assert errors(tp, "3") == top("expected integer or null, got string")
    assert errors(tp, True) == top("expected integer or null, got boolean")
    assert errors(int | None, 1.5) == top("expected integer or null, got number")


def test_union_of_int_and_str() -> None:
    assert CONVERTER.structure(1, int | str) == 1
    assert CONVERTER.structure("1", int | str) == "1"
    assert errors(int | str, 1.5) == top("expected integer or string, got number")
    assert errors(int | str, None) == top("expected integer or string, got null")


def test_union_of_int_and_str_rejects_bool() -> None:
    # True is not an int; the union must be as strict as its members.
    assert errors(int | str, True) == top("expected integer or string, got boolean")
    assert errors(list[int | str], [1, False]) == [
        {"path": "$[1]", "message": "expected integer or string, got boolean"}
    ]


def test_union_with_float_widens_int_to_float() -> None:
    result = CONVERTER.structure(1, float | str)
    assert result == 1.0
    assert type(result) is float


def test_literal() -> None:
    tp = Literal["a", 1]
    assert CONVERTER.structure("a", tp) == "a"
    assert CONVERTER.structure(1, tp) == 1
    assert errors(tp, "b") == top('expected one of "a", 1')
    assert errors(tp, None) == top('expected one of "a", 1')


def test_literal_int_rejects_bool() -> None:
    # True == 1 in Python, but true is not 1 in JSON.
    assert errors(Literal[1], True) == top("expected one of 1")


def test_enum() -> None:
    assert CONVERTER.structure("red", Color) is Color.RED
    assert errors(Color, "green") == top('expected one of "red", "blue"')
    assert errors(Color, "RED") == top('expected one of "red", "blue"')


def test_list_of_records_reports_exact_paths() -> None:
    assert CONVERTER.structure([{"id": 1}, {"id": 2, "name": "b"}], list[Item]) == [
        Item(1),
        Item(2, "b"),
    ]
    assert errors(list[Item], [{"id": 1}, {"id": "2"}]) == [
        {"path": "$[1].id", "message": "expected an integer, got string"}
    ]


def test_nested_records_report_every_failing_field() -> None:
    value = {"items": [{"id": 1}, {"id": "x", "name": 3}, 5], "note": 1}
    assert errors(Order, value) == [
        {"path": "$.items[1].id", "message": "expected an integer, got string"},
        {"path": "$.items[1].name", "message": "expected a string, got number"},
        {"path": "$.items[2]", "message": "expected an object, got number"},
        {"path": "$.note", "message": "expected string or null, got number"},
    ]


def test_nested_records_with_extra_and_missing_keys() -> None:
    assert errors(Order, {"items": [{"name": "n"}, {"id": 1, "price": 2}]}) == [
        {"path": "$.items[0].id", "message": "required field missing"},
        {"path": "$.items[1]", "message": "extra fields found (price)"},
    ]


def test_record_inside_mapping_reports_exact_path() -> None:
    assert errors(dict[str, Item], {"k": {"id": "1"}}) == [
        {"path": "$['k'].id", "message": "expected an integer, got string"}
    ]


def test_homogeneous_tuple() -> None:
    assert CONVERTER.structure([1, 2, 3], tuple[int, ...]) == (1, 2, 3)
    assert CONVERTER.structure([], tuple[int, ...]) == ()
    assert errors(tuple[int, ...], "12") == top("expected an array, got string")
    assert errors(tuple[int, ...], [1, "2"]) == [
        {"path": "$[1]", "message": "expected an integer, got string"}
    ]


def test_fixed_tuple() -> None:
    assert CONVERTER.structure([1, "a"], tuple[int, str]) == (1, "a")
    assert errors(tuple[int, str], [1, 2]) == [
        {"path": "$[1]", "message": "expected a string, got number"}
    ]
    assert errors(tuple[int, str], [1]) == top("expected an array of 2 items, got 1")
    assert errors(tuple[int, str], [1, "a", 2]) == top("expected an array of 2 items, got 3")


def test_one_item_tuple() -> None:
    assert CONVERTER.structure(["a"], tuple[str]) == ("a",)
    assert errors(tuple[str], "a") == top("expected an array, got string")  # not ("a",)
    assert errors(tuple[str], []) == top("expected an array of 1 item, got 0")
    assert errors(tuple[str], ["a", "b"]) == top("expected an array of 1 item, got 2")
    assert errors(tuple[str], [1]) == [{"path": "$[0]", "message": "expected a string, got number"}]


def test_wrong_tuple_length_inside_a_record() -> None:
    @attrs.frozen
    class Move:
        to: tuple[int, int]

    assert errors(Move, {"to": [1]}) == [
        {"path": "$.to", "message": "expected an array of 2 items, got 1"}
    ]


@pytest.mark.parametrize("tp", [tuple[str, str], tuple[str]], ids=["two items", "one item"])
def test_fixed_tuple_rejects_non_arrays(tp: Any) -> None:
    # A string is not an array: "ab" must not become ("a", "b").
    assert errors(tp, "ab") == top("expected an array, got string")
    assert errors(tp, {"0": 1}) == top("expected an array, got object")
    assert errors(tp, None) == top("expected an array, got null")


def test_set_and_frozenset() -> None:
    result = CONVERTER.structure([1, 1, 2], set[int])
    assert result == {1, 2}
    assert type(result) is set
    frozen = CONVERTER.structure(["a", "b"], frozenset[str])
    assert frozen == frozenset({"a", "b"})
    assert type(frozen) is frozenset
    assert errors(set[int], {"a": 1}) == top("expected an array, got object")
    assert errors(frozenset[str], "ab") == top("expected an array, got string")
    assert errors(set[int], [1, "a"]) == [
        {"path": "$[1]", "message": "expected an integer, got string"}
    ]


def test_unstructure_records_to_dicts() -> None:
    order = Order([Item(1), Item(2, "b")], note="n")
    assert CONVERTER.unstructure(order) == {
        "items": [{"id": 1, "name": "x"}, {"id": 2, "name": "b"}],
        "note": "n",
    }
    assert CONVERTER.unstructure(Point(1, 2.5)) == {"x": 1, "y": 2.5}
    assert CONVERTER.unstructure([Item(3)]) == [{"id": 3, "name": "x"}]


def test_describe_error_for_a_plain_exception_uses_the_given_type() -> None:
    assert describe_error(ValueError("nope"), Color) == top('expected one of "red", "blue"')
    assert describe_error(ValueError("nope"), int | str) == top("expected int | str")


# -- through a served app, over a real socket ---------------------------------------


async def test_int_keys_round_trip(serve):
    # JSON keys are strings both ways: a dict[int, X] payload reads "2" as 2, and a
    # reply's int keys are written as strings.
    app = App()

    @app.direct("double")
    async def double(scores: dict[int, int]) -> dict[int, int]:
        assert all(type(key) is int for key in scores)
        return {key * 2: value * 2 for key, value in scores.items()}

    port = await serve(app)
    async with connect(port) as client:
        reply = await client.request("double", {"2": 5, "-3": 1})
        assert reply == {"type": "double", "id": 1, "ok": True, "data": {"4": 10, "-6": 2}}
        reply = await client.request("double", {"two": 5}, id=2)
        assert reply["error"]["details"] == [
            {"path": "$['two']", "message": 'expected an integer key, got "two"'}
        ]


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class Flavour(str, enum.Enum):  # noqa: UP042 - the mixin spelling is what is tested
    SWEET = "sweet"


class Ratio(float, enum.Enum):
    HALF = 0.5


def test_int_str_and_float_enums_take_their_members_only() -> None:
    # cattrs gives these the hook of their base type, which took any integer or
    # string and handed the handler a plain value instead of a member.
    assert CONVERTER.structure(2, Size) is Size.LARGE
    assert CONVERTER.structure("fast", Mode) is Mode.FAST
    assert CONVERTER.structure("sweet", Flavour) is Flavour.SWEET
    assert CONVERTER.structure(0.5, Ratio) is Ratio.HALF
    assert errors(Size, 3) == top("expected one of 1, 2")
    assert errors(Size, True) == top("expected an integer, got boolean")
    assert errors(Mode, "slow") == top('expected one of "fast"')
    assert errors(Flavour, 1) == top("expected a string, got number")
    assert errors(Ratio, 0.25) == top("expected one of 0.5")
    assert errors(dict[Mode, int], {"slow": 1}) == [
        {"path": "$['slow']", "message": 'expected one of "fast"'}
    ]


def test_a_union_of_a_class_and_scalars_is_exact() -> None:
    tp = Item | int | None
    assert CONVERTER.structure(1, tp) == 1
    assert CONVERTER.structure(None, tp) is None
    assert CONVERTER.structure({"id": 1}, tp) == Item(1)
    assert errors(tp, True) == top("expected an object, got boolean")
    assert errors(tp, 1.5) == top("expected an object, got number")
    widened = CONVERTER.structure(1, Item | float)
    assert widened == 1.0
    assert type(widened) is float
    assert errors(Item | float, float("nan")) == top("expected a finite number")
    assert errors(float | None, float("inf")) == top("expected a finite number")


def test_enum_keys_are_written_as_their_values() -> None:
    written = CONVERTER.unstructure({Color.RED: 1}, dict[Color, int])
    assert written == {"red": 1}
    assert CONVERTER.structure(written, dict[Color, int]) == {Color.RED: 1}


def test_an_empty_tuple_takes_no_items() -> None:
    assert CONVERTER.structure([], tuple[()]) == ()
    assert errors(tuple[()], [1]) == top("expected an array of 0 items, got 1")
    assert CONVERTER.structure([1, "a"], tuple) == (1, "a")
