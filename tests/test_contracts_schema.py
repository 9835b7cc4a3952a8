"""wsroute.contracts' JSON Schemas against the converter they describe.

The differential tests generate values of representative types with hypothesis,
write them as the server does (unstructure, then JSON), and check that the schema
takes them and the server reads them back; then they change such documents (an
extra key, a key dropped, a value swapped for another JSON value) and check that
the schema and the server (``_protocol.decode`` and the route's structuring, as a
request goes) accept or refuse each one alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import json
import re
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, Literal, NewType, Optional, TypeVar, Union

import attrs
import cattrs
import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wsroute import App, Connection, make_converter
from wsroute._errors import ProtocolError
from wsroute._hook_registration import VALUES
from wsroute._protocol import JSON_KEYS, decode, json_default
from wsroute._routing import Handler, InvalidData, RouteKind
from wsroute.contracts import DIALECT, SchemaError, json_schema, patterns, schema_set, schemas_for

from .test_examples import EXAMPLES, load_example

INT_MIN, INT_MAX = -(2**63), 2**64 - 1


# -- representative types: every construct the schema supports ------------------


class Color(enum.Enum):
    """A colour."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


class Mixed(enum.Enum):
    ONE = 1
    HALF = 0.5
    NO = False
    NONE = None


UserId = NewType("UserId", int)


@attrs.frozen
class Point:
    """A point on the plane."""

    x: int
    y: float


@attrs.frozen
class Circle:
    kind: Literal["circle"]
    radius: float


@attrs.frozen
class Square:
    kind: Literal["square"]
    side: float


@attrs.frozen
class Named:
    name: str


@attrs.frozen
class Numbered:
    number: int
    label: str = ""


@dataclasses.dataclass(frozen=True)
class Box:
    width: int
    corner: Optional[Point] = None  # noqa: UP045 - Optional is a construct under test
    tags: list[str] = dataclasses.field(default_factory=list)


@attrs.frozen
class Tree:
    value: int
    children: list[Tree] = attrs.Factory(list)


@attrs.frozen
class Everything:
    i: int
    f: float
    b: bool
    s: str
    raw: bytes
    when: datetime.datetime
    day: datetime.date
    color: Color
    level: Level
    mode: Mode
    mixed: Mixed
    lit: Literal["a", 1, True, None]
    user: UserId
    note: Annotated[str, "a note"]
    maybe: int | None
    either: int | str
    number: float | None
    shape: Circle | Square
    unique: Named | Numbered
    point_or_int: Point | int | None
    list_or_int: list[int] | int
    fixed: tuple[int, str, bool]
    single: tuple[Point]
    empty: tuple[()]
    many: tuple[float, ...]
    points: list[Point]
    tags: set[str]
    frozen: frozenset[int]
    by_name: dict[str, int]
    by_id: dict[int, Point]
    by_color: dict[Color, int]
    by_mode: dict[Mode, str]
    by_letter: dict[Literal["x", "y"], bool]
    anything: Any
    nested: list[dict[str, tuple[int, ...]]]
    box: Box
    tree: Tree
    label: str = "none"
    count: int = 0
    extra: list[int] = attrs.Factory(list)


REPRESENTATIVE = [Everything, Point, Box, Tree, Circle | Square, list[Point], dict[int, Color]]


# -- values of a type, as the converter's domain has them ----------------------

_JSON_LEAVES = st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | st.text(max_size=5)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
_OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes))
)


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Values of ``tp`` that the converter writes and reads back as they were."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return _JSON
    if tp is None or tp is type(None):
        return st.none()
    if getattr(tp, "__supertype__", None) is not None:
        return values(tp.__supertype__)
    if origin is Annotated:
        return values(args[0])
    simple: dict[Any, st.SearchStrategy[Any]] = {
        int: st.integers(INT_MIN, INT_MAX),
        float: st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        str: st.text(max_size=8),
        bytes: st.binary(max_size=8),
        datetime.datetime: st.datetimes(timezones=st.none() | _OFFSETS),
        datetime.date: st.dates(),
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, types.UnionType):
        return st.one_of([values(arg) for arg in args])
    if attrs.has(tp) or dataclasses.is_dataclass(tp):
        return _record_values(tp)
    if origin is tuple:
        if args and args[-1] is Ellipsis:
            return st.lists(values(args[0]), max_size=3).map(tuple)
        if not args:
            return st.just(())
        return st.tuples(*[values(arg) for arg in args])
    if origin is list:
        return st.lists(values(args[0]), max_size=3)
    if origin is set:
        return st.sets(values(args[0]), max_size=3)
    if origin is frozenset:
        return st.frozensets(values(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(values(args[0]), values(args[1]), max_size=3)
    raise AssertionError(f"no strategy for {tp!r}")


def _record_values(cls: type) -> st.SearchStrategy[Any]:
    if cls is Tree:
        return st.deferred(
            lambda: st.builds(Tree, st.integers(INT_MIN, INT_MAX), st.lists(_trees, max_size=2))
        )
    hints = _hints(cls)
    return st.builds(cls, **{name: values(tp) for name, tp in hints.items()})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


_trees: st.SearchStrategy[Tree] = st.deferred(lambda: _record_values(Tree))


# -- the two judges --------------------------------------------------------------

CONVERTER = make_converter()


@functools.cache
def handler(tp: Any) -> Handler:
    """A direct route taking ``tp``, as the server makes one."""

    async def route(payload: Any) -> None:
        return None

    route.__annotations__ = {"payload": tp, "return": None}
    return Handler("t", RouteKind.DIRECT, route, CONVERTER, values=VALUES)


def wire(value: Any, tp: Any) -> Any:
    """``value`` as the server writes it: unstructured, then JSON."""
    data = CONVERTER.unstructure(value, tp)
    return orjson.loads(orjson.dumps(data, option=JSON_KEYS, default=json_default))


def server_accepts(route: Handler, document: Any) -> bool:
    """Whether the server takes ``document`` as the request's data."""
    text = json.dumps({"type": "t", "id": 1, "data": document})  # writes any integer
    try:
        route.structure(decode(text).data)
    except (InvalidData, ProtocolError):
        return False
    return True


@functools.cache
def validator(tp: Any) -> jsonschema.Draft202012Validator:
    schema = json_schema(tp, converter=CONVERTER)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def only_datetime_forms(errors: Sequence[jsonschema.ValidationError]) -> bool:
    """Whether every error is a datetime or date the schema leaves out but Python's
    ``fromisoformat`` reads (``2024-05-01`` as a datetime, ``20240501``, ...): the one
    way the schema is knowingly stricter than the server (docs/contracts.md)."""
    leaves = [leaf for error in errors for leaf in _leaves(error)]
    for leaf in leaves:
        if leaf.validator != "pattern" or leaf.validator_value not in (
            patterns.DATETIME,
            patterns.DATE,
        ):
            continue
        try:
            parse = (
                datetime.datetime if leaf.validator_value == patterns.DATETIME else datetime.date
            )
            parse.fromisoformat(leaf.instance)
            return True
        except ValueError:
            continue
    return False


def integer_beyond_64_bits(tp: Any, document: Any) -> bool:
    """Whether ``document`` is refused only for an integer literal beyond 64 bits
    where a float or any value is expected: the protocol refuses such a literal
    anywhere in a frame, which the schema of a float or of ``Any`` cannot say, as
    JSON Schema does not tell 1e20 from 100000000000000000000 (docs/contracts.md).
    With each such integer made 1.5, both must take the document."""

    def tame(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: tame(item) for key, item in value.items()}
        if isinstance(value, list):
            return [tame(item) for item in value]
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            return 1.5
        return value

    tamed = tame(document)
    return (
        tamed != document and validator(tp).is_valid(tamed) and server_accepts(handler(tp), tamed)
    )


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    if not error.context:
        return [error]
    return [leaf for sub in error.context for leaf in _leaves(sub)]


# -- the differential tests ------------------------------------------------------

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("tp", REPRESENTATIVE, ids=repr)
@SETTINGS
@given(data=st.data())
def test_what_the_server_writes_is_valid_and_read_back(tp: Any, data: st.DataObject) -> None:
    value = data.draw(values(tp))
    document = wire(value, tp)
    errors = list(validator(tp).iter_errors(document))
    assert not errors, [e.message for e in errors]
    assert handler(tp).structure(document) == value


def _paths(document: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(document, dict):
        for key, item in document.items():
            found += _paths(item, (*at, key))
    elif isinstance(document, list):
        for index, item in enumerate(document):
            found += _paths(item, (*at, index))
    return found


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _replace(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(document))
    _get(copy, path[:-1])[path[-1]] = new
    return copy


_SAMPLE_TEXT = st.sampled_from(
    [
        "",
        "aGk=",
        "aGk",
        "a===",
        "aGk=\n",
        "0",
        "01",
        "-0",
        "+1",
        "1_0",
        str(INT_MAX),
        str(INT_MAX + 1),
        str(INT_MIN),
        str(INT_MIN - 1),
        "red",
        "RED",
        "fast",
        "circle",
        "square",
        "x",
        "a",
        "2024-02-29",
        "2023-02-29",
        "2024-05-01T12:30:00",
        "2024-05-01T12:30:00.250Z",
        "2024-05-01T12:30:00+02:00",
        "2024-05-01T24:00:00",
        "2024-13-01T00:00:00",
        "2024-05-01t12:30:00",
        "2024-05-01 12:30:00",
        "20240501",
        "2024-05-01T12",
        "0000-01-01",
    ]
)
#: JSON values to put anywhere. No float with an integral value: JSON Schema does
#: not tell 1.0 from 1, wsroute does (docs/contracts.md).
_REPLACEMENTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT_MIN, INT_MAX),
    st.integers(INT_MAX + 1, 2**70),
    st.integers(-(2**70), INT_MIN - 1),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.text(max_size=6),
    _SAMPLE_TEXT,
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.sampled_from(["x", "y", "kind", "1", "zz"]), st.integers(0, 2), max_size=2),
)


def _mutate(data: st.DataObject, document: Any) -> Any:
    objects = [p for p in _paths(document) if isinstance(_get(document, p), dict)]
    kinds = ["replace"] + (["extra", "drop", "rename"] if objects else [])
    kind = data.draw(st.sampled_from(kinds), label="mutation")
    if kind == "replace":
        path = data.draw(st.sampled_from(_paths(document)), label="path")
        return _replace(document, path, data.draw(_REPLACEMENTS, label="new value"))
    path = data.draw(st.sampled_from(objects), label="object")
    target = dict(_get(document, path))
    if kind == "extra":
        key = data.draw(st.sampled_from(["zz_extra", "1", "kind"]) | st.text(max_size=4))
        target[key] = data.draw(_REPLACEMENTS, label="new value")
    elif target:
        key = data.draw(st.sampled_from(sorted(target)), label="key")
        item = target.pop(key)
        if kind == "rename":
            target[data.draw(_SAMPLE_TEXT | st.text(max_size=4), label="new key")] = item
    return _replace(document, path, target)


@pytest.mark.parametrize("tp", REPRESENTATIVE, ids=repr)
@SETTINGS
@given(data=st.data())
def test_changed_documents_are_judged_alike(tp: Any, data: st.DataObject) -> None:
    document = _mutate(data, wire(data.draw(values(tp)), tp))
    errors = list(validator(tp).iter_errors(document))
    accepted = server_accepts(handler(tp), document)
    if accepted and errors:
        assert only_datetime_forms(errors), (document, [e.message for e in errors])
    elif not accepted and not errors:
        assert integer_beyond_64_bits(tp, document), document
    else:
        assert accepted == (not errors), (document, [e.message for e in errors])


# Targeted changes, each refused by both, at the same place.
CHANGES: list[tuple[Any, Any, Callable[[Any], Any], str]] = [
    (Point, Point(1, 2.0), lambda d: {**d, "z": 1}, "$"),
    (Point, Point(1, 2.0), lambda d: {"y": d["y"]}, "$.x"),
    (Point, Point(1, 2.0), lambda d: {**d, "x": "1"}, "$.x"),
    (Point, Point(1, 2.0), lambda d: {**d, "x": True}, "$.x"),
    (Point, Point(1, 2.0), lambda d: {**d, "x": 1.5}, "$.x"),
    (Point, Point(1, 2.0), lambda d: {**d, "y": None}, "$.y"),
    (Box, Box(1), lambda d: {**d, "width": 2**64}, ""),  # beyond 64 bits: the frame
    (Box, Box(1), lambda d: {**d, "width": -(2**63) - 1}, ""),
    (Box, Box(1), lambda d: {**d, "tags": "ab"}, "$.tags"),
    (Box, Box(1), lambda d: {**d, "tags": [1]}, "$.tags[0]"),
    (Box, Box(1, Point(1, 1.0)), lambda d: {**d, "corner": {"x": 1}}, "$.corner.y"),
    (Circle | Square, Circle("circle", 1.0), lambda d: {**d, "kind": "oval"}, None),
    (Circle | Square, Circle("circle", 1.0), lambda d: {"radius": 1.0}, None),
    (dict[int, Color], {1: Color.RED}, lambda d: {"01": "red"}, None),
    (dict[int, Color], {1: Color.RED}, lambda d: {"1": "blue"}, None),
    (dict[int, Color], {1: Color.RED}, lambda d: {str(INT_MAX + 1): "red"}, None),
    (tuple[int, str], (1, "a"), lambda d: [*d, "b"], "$"),
    (tuple[int, str], (1, "a"), lambda d: d[:1], "$"),
    (tuple[int, str], (1, "a"), lambda d: [d[1], d[0]], "$[0]"),
    (bytes, b"hi", lambda d: d.rstrip("="), "$"),
    (bytes, b"hi", lambda d: d + "\n", "$"),
    (datetime.datetime, datetime.datetime(2024, 1, 1), lambda d: "2023-02-29T00:00:00", "$"),
    (datetime.date, datetime.date(2024, 1, 1), lambda d: "2024-04-31", "$"),
    (Level, Level.LOW, lambda d: 3, "$"),
    (Mode, Mode.FAST, lambda d: "slow", "$"),
    (Literal["a", 1], "a", lambda d: True, "$"),
    (set[int], {1}, lambda d: {"1": 1}, "$"),
]


@pytest.mark.parametrize(("tp", "value", "change", "where"), CHANGES)
def test_targeted_changes_are_refused_by_both(
    tp: Any, value: Any, change: Callable[[Any], Any], where: str | None
) -> None:
    document = change(wire(value, tp))
    errors = list(validator(tp).iter_errors(document))
    assert errors
    route = handler(tp)
    assert not server_accepts(route, document)
    if where:  # where the server says it is wrong is where the schema says so
        with pytest.raises(InvalidData) as info:
            route.structure(decode(json.dumps({"type": "t", "data": document})).data)
        paths = {detail["path"] for detail in info.value.details}
        found = [leaf for error in errors for leaf in [error, *_leaves(error)]]
        schema_paths = {path for error in found for path in _error_paths(error)}
        assert paths & schema_paths, (paths, schema_paths)
    elif where == "":  # the integer does not fit the frame: refused before the route
        with pytest.raises(ProtocolError):
            decode(json.dumps({"type": "t", "data": document}))


def _error_paths(error: jsonschema.ValidationError) -> list[str]:
    """Where ``error`` is, as the server's details write it; a missing field is at
    its own path there, at its object's in the schema's error."""
    at = list(error.absolute_path)
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return [_json_path([*at, key]) for key in missing]
    return [_json_path(at)]


def _json_path(path: Sequence[Any]) -> str:
    text = "$"
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


# -- what each construct becomes ---------------------------------------------------


def test_a_class_becomes_a_def_with_its_fields() -> None:
    schema = json_schema(Numbered)
    assert schema == {
        "$schema": DIALECT,
        "$ref": "#/$defs/Numbered",
        "$defs": {
            "Numbered": {
                "title": "Numbered",
                "type": "object",
                "properties": {
                    "number": {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX},
                    "label": {"type": "string", "default": ""},
                },
                "required": ["number"],
                "additionalProperties": False,
            }
        },
    }


def test_docstrings_become_descriptions() -> None:
    defs = json_schema(Point)["$defs"]
    assert defs["Point"]["description"] == "A point on the plane."
    assert json_schema(Color)["$defs"]["Color"] == {
        "title": "Color",
        "description": "A colour.",
        "enum": ["red", "green"],
    }
    assert "description" not in json_schema(Level)["$defs"]["Level"]


def test_constructs() -> None:
    def schema(tp: Any) -> Any:
        found = json_schema(tp)
        del found["$schema"]
        return found

    assert schema(tuple[int, str])["prefixItems"][1] == {"type": "string"}
    assert schema(tuple[int, str])["items"] is False
    assert schema(tuple[()]) == {"type": "array", "maxItems": 0}
    assert schema(tuple[str, ...]) == {"type": "array", "items": {"type": "string"}}
    assert schema(frozenset[str]) == {"type": "array", "items": {"type": "string"}}
    assert schema(Literal["a"]) == {"const": "a"}
    assert schema(Literal["a", 1]) == {"enum": ["a", 1]}
    assert schema(int | None) == {"anyOf": [schema(int), {"type": "null"}]}
    assert schema(dict[str, bool]) == {
        "type": "object",
        "additionalProperties": {"type": "boolean"},
    }
    assert schema(dict[int, bool])["propertyNames"] == {"pattern": patterns.INT_KEY}
    assert schema(Any) == {}
    assert schema(Annotated[UserId, "x"]) == schema(int)


def test_without_forbidden_extra_keys_a_class_takes_more_keys() -> None:
    loose = make_converter(forbid_extra_keys=False)
    assert "additionalProperties" not in json_schema(Point, converter=loose)["$defs"]["Point"]
    assert loose.structure({"x": 1, "y": 2, "z": 3}, Point) == Point(1, 2.0)


def test_classes_of_the_same_name_are_told_apart_by_module() -> None:
    elsewhere = attrs.make_class("Point", {"z": attrs.field(type=int)})
    elsewhere.__module__ = "other.place"
    twin = attrs.make_class("Point", {"w": attrs.field(type=int)})  # this module's, again
    found = schema_set([("a", Point), ("b", elsewhere), ("c", twin), ("d", Named)])
    assert found.schemas[0] == {"$ref": "#/$defs/tests.test_contracts_schema.Point"}
    assert found.names == {
        Point: "tests.test_contracts_schema.Point",
        elsewhere: "other.place.Point",
        twin: "tests.test_contracts_schema.Point_2",
        Named: "Named",
    }
    assert set(found.defs) == set(found.names.values())


def test_ref_template() -> None:
    found = schema_set([("a", list[Point])], ref_template="#/components/schemas/{name}")
    assert found.schemas[0] == {"type": "array", "items": {"$ref": "#/components/schemas/Point"}}


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (
            patterns.INT_KEY,
            ["0", "-1", str(INT_MAX), str(INT_MIN), "10"],
            ["01", "-0", "+1", str(INT_MAX + 1), str(INT_MIN - 1), "1\n", ""],
        ),
        (
            patterns.BASE64,
            ["", "aGk=", "aGVsbG8=", "AAAA"],
            ["aGk", "a===", "aGk=\n", "aG k=", "====", "aGk=aGk="],
        ),
        (
            patterns.DATE,
            ["2024-02-29", "2000-02-29", "0001-01-01"],
            ["1900-02-29", "2023-02-29", "2024-04-31", "0000-01-01", "20240101"],
        ),
        (
            patterns.DATETIME,
            ["2024-05-01T12:30:00", "2024-05-01T12:30:00.5Z", "2024-05-01T00:00:00-23:59"],
            ["2024-05-01", "2024-05-01T24:00:00", "2024-05-01T12:30", "2024-05-01T12:30:00+24:00"],
        ),
    ],
)
def test_patterns(pattern: str, good: list[str], bad: list[str]) -> None:
    check = jsonschema.Draft202012Validator({"type": "string", "pattern": pattern})
    assert [text for text in good if not check.is_valid(text)] == []
    assert [text for text in bad if check.is_valid(text)] == []
    assert re.fullmatch(pattern.removeprefix("^").removesuffix("$(?!\\n)"), good[0])


@SETTINGS
@given(st.integers(-(2**66), 2**66))
def test_the_integer_key_pattern_is_the_converters(number: int) -> None:
    key = str(number)
    try:
        CONVERTER.structure({key: True}, dict[int, bool])
        read = True
    except cattrs.BaseValidationError:
        read = False
    assert read == bool(re.search(patterns.INT_KEY, key))


@SETTINGS
@given(st.text(alphabet="aGk=+/AZ09 \n", max_size=9))
@example("00000000=")  # a stray "=" after whole quanta: CPython's decoder takes it
def test_the_base64_pattern_is_the_converters(text: str) -> None:
    try:
        CONVERTER.structure(text, bytes)
        read = True
    except TypeError:
        read = False
    assert read == bool(re.search(patterns.BASE64, text))


# -- what has no exact schema is an error at generation time -------------------


@attrs.frozen
class Checked:
    n: int = attrs.field(validator=attrs.validators.gt(0))


@attrs.frozen
class Hidden:
    n: int
    m: int = attrs.field(init=False, default=0)


@attrs.frozen
class Loose:
    kind: Literal["loose"] = "loose"


@attrs.frozen
class Tight:
    kind: Literal["tight"]


@attrs.frozen
class Stamped:
    when: uuid.UUID


class Tupled(enum.Enum):
    PAIR = (1, 2)


T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    items: list[T]


class Custom:
    pass


@pytest.mark.parametrize(
    ("tp", "message"),
    [
        (Checked, "tests.test_contracts_schema.Checked has a validator or converter on field 'n'"),
        (Hidden, "has a field outside __init__"),
        (Loose | Tight, "which Loose gives a default"),
        (Stamped, "at Stamped.when: uuid.UUID cannot be read by the app's converter"),
        (Tupled, "has a value ((1, 2)) that is not a string"),
        (Page[int], "is a generic class"),
        (Literal[b"x"], "has a value (b'x') JSON cannot write"),
        (dict[bool, int], "has keys that are not strings or integers"),
        (dict[Level, int], "has keys that are not strings or integers"),
        (list[Custom], "cannot be read by the app's converter"),
        (Named | list[int], "cannot be read by the app's converter"),
    ],
    ids=repr,
)
def test_no_exact_schema_is_an_error(tp: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)):
        json_schema(tp)


def test_a_union_of_classes_needs_extra_keys_refused() -> None:
    loose = make_converter(forbid_extra_keys=False)
    with pytest.raises(SchemaError, match="the converter allows extra keys"):
        json_schema(Named | Numbered, converter=loose)


def test_a_hook_of_the_apps_own_needs_an_override() -> None:
    converter = make_converter()
    converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(value))
    converter.register_unstructure_hook(uuid.UUID, str)
    with pytest.raises(SchemaError, match="has a structure hook of the app's own") as info:
        json_schema(Stamped, converter=converter)
    assert "overrides={type: schema}" in str(info.value)
    override = {"type": "string", "format": "uuid"}
    schema = json_schema(Stamped, converter=converter, overrides={uuid.UUID: override})
    assert schema["$defs"]["Stamped"]["properties"]["when"] == override


def test_a_custom_hook_on_a_class_needs_an_override() -> None:
    converter = make_converter()
    converter.register_structure_hook(Point, lambda value, _: Point(*value))
    with pytest.raises(SchemaError, match="Point has a structure hook of the app's own"):
        json_schema(list[Point], converter=converter)


# -- apps ----------------------------------------------------------------------


def test_schemas_for_an_app_name_the_route_that_fails() -> None:
    app = App()

    @app.direct("stamp")
    async def stamp(data: Point) -> Stamped:
        raise NotImplementedError

    with pytest.raises(
        SchemaError, match=r"^direct route 'stamp' reply, at Stamped\.when: uuid\.UUID"
    ):
        schemas_for(app)


def test_schemas_for_an_app() -> None:
    app = App(default_topic="all")

    @app.direct("get")
    async def get(ref: Numbered, conn: Connection) -> Box | None:
        raise NotImplementedError

    @app.broadcast("shout")
    async def shout(text: str) -> Named:
        raise NotImplementedError

    @app.direct("ping")
    async def ping() -> None:
        return None

    app.declare_event("tick", Point, description="Every second.")
    found = schemas_for(app)
    assert [(r.route.name, r.payload, r.result) for r in found.routes] == [
        (
            "get",
            {"$ref": "#/$defs/Numbered"},
            {"anyOf": [{"$ref": "#/$defs/Box"}, {"type": "null"}]},
        ),
        ("shout", {"type": "string"}, {"$ref": "#/$defs/Named"}),
        ("ping", {"type": "null"}, {"type": "null"}),
    ]
    assert [(e.event.name, e.data) for e in found.events] == [("tick", {"$ref": "#/$defs/Point"})]
    assert list(found.defs) == ["Numbered", "Box", "Point", "Named"]
    assert found.names[Box] == "Box"
    document = found.document()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$defs"]["route:shout:event"] == {"$ref": "#/$defs/Named"}
    assert document["$defs"]["event:tick:data"] == {"$ref": "#/$defs/Point"}
    check = jsonschema.Draft202012Validator({**document, "$ref": "#/$defs/route:get:reply"})
    assert check.is_valid({"width": 1})
    assert check.is_valid(None)
    assert not check.is_valid({"width": 1, "depth": 2})


@pytest.mark.parametrize(
    "name", sorted(path.name for path in EXAMPLES.iterdir() if (path / "app.py").exists())
)
def test_every_route_of_every_example_has_a_schema(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_example(name, monkeypatch).app
    found = schemas_for(app)
    assert len(found.routes) == len(app.handlers) > 0
    jsonschema.Draft202012Validator.check_schema(found.document())
    for item in found.routes:
        for schema in (item.payload, item.result):
            jsonschema.Draft202012Validator.check_schema({**schema, "$defs": found.defs})
