"""The strict cattrs converter every App uses by default.

cattrs coerces by default (``int("1")``, ``str(None)``, ``bool("no")``, ``list("ab")``),
which turns client mistakes into silent data corruption. Here a JSON value must already
have the right JSON type: the only widening is an integer where a float is expected,
because JSON has a single number type. Built on the orjson preconf converter so
unstructuring matches what orjson can encode.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import math
import operator
import re
from collections.abc import Callable
from types import UnionType
from typing import Any, Literal, NewType, Union, get_args, get_origin

import attrs
import cattrs
import orjson
from cattrs import cols
from cattrs.errors import ClassValidationError, IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.orjson import make_converter as _make_orjson_converter
from cattrs.v import format_exception, transform_error

__all__ = ["StrictTypeError", "describe_error", "make_converter"]


class StrictTypeError(TypeError):
    """A JSON value of the wrong JSON type; its message is sent to the client."""


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, bytes):
        return "binary"
    return type(value).__name__


def _expect(expected: str, value: object) -> StrictTypeError:
    return StrictTypeError(f"expected {expected}, got {_json_type(value)}")


def _structure_int(value: Any, tp: type) -> Any:
    if type(value) is not int:
        raise _expect("an integer", value)
    if tp is not int:
        return _subclass(value, tp)
    return value


def _structure_float(value: Any, tp: type) -> Any:
    if type(value) is float:
        if not math.isfinite(value):  # JSON has no NaN or infinity; msgpack does
            raise StrictTypeError("expected a finite number")
    elif type(value) is int:
        value = float(value)
    else:
        raise _expect("a number", value)
    if tp is not float:
        return _subclass(value, tp)
    return value


def _structure_str(value: Any, tp: type) -> Any:
    if type(value) is not str:
        raise _expect("a string", value)
    if tp is not str:
        return _subclass(value, tp)
    return value


def _subclass(value: Any, tp: Any) -> Any:
    """A value for a subclass of ``int``, ``float`` or ``str``, which cattrs gives
    the hook of its base: an ``IntEnum`` or ``StrEnum`` must be one of its members,
    not any integer or string."""
    if _is_enum(tp):
        return _enum_hook(tp)(value, tp)
    return tp(value)


def _structure_bytes(value: Any, _: type) -> bytes:
    """Binary (msgpack) as is, or base64 text (JSON, which has no binary)."""
    if type(value) is bytes:
        return value
    if type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise StrictTypeError("expected base64 text") from None
    raise _expect("base64 text or binary", value)


def _same(value: bytes) -> bytes:
    return value


def _structure_bool(value: Any, _: type) -> bool:
    if type(value) is not bool:
        raise _expect("a boolean", value)
    return value


#: The key of a ``dict[int, X]``, which JSON writes as a string.
_IntKey = NewType("_IntKey", int)
_INT_KEY = re.compile(r"0|-?[1-9][0-9]{0,19}")


def _structure_int_key(value: Any, _: type) -> int:
    """An object key for ``dict[int, X]``: an integer written in its shortest decimal
    form, as orjson writes one (so no "+1", "01", " 1" or "1_000", which int() takes),
    within 64 bits like any integer wsroute reads."""
    if type(value) is str and _INT_KEY.fullmatch(value):
        number = int(value)
        if -(2**63) <= number < 2**64:
            return number
    raise StrictTypeError(f"expected an integer key, got {_json_repr(value)}")


def _is_array_type(tp: Any) -> bool:
    # The tuple test first: cattrs' is_sequence raises on tuple[X] (one item), and a
    # predicate that raises is skipped, which left tuple[X] to a hook without our
    # guard against non-arrays.
    return get_origin(tp) is tuple or cols.is_sequence(tp) or cols.is_any_set(tp)


_PRIMITIVES = frozenset({str, int, float, bool, type(None)})


def _is_primitive_union(tp: Any) -> bool:
    return (isinstance(tp, UnionType) or get_origin(tp) is Union) and all(
        arg in _PRIMITIVES for arg in get_args(tp)
    )


def _primitive_union_factory(tp: Any) -> Callable[..., Any]:
    """Exact JSON types for unions such as ``int | str``: ``True`` is not an ``int``."""

    def refuse(value: Any, _: Any) -> Any:
        raise StrictTypeError(f"expected {_union_name(tp)}, got {_json_type(value)}")

    return _exact_scalars(get_args(tp), refuse, tp)


def _finite(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        raise StrictTypeError("expected a finite number")
    return value


def _is_mixed_union(tp: Any) -> bool:
    if not (isinstance(tp, UnionType) or get_origin(tp) is Union):
        return False
    primitive = [arg in _PRIMITIVES for arg in get_args(tp)]
    return any(primitive) and not all(primitive)


def _mixed_union_factory(converter: cattrs.Converter, tp: Any) -> Callable[..., Any]:
    """Unions such as ``Item | int | None``: a JSON scalar of a type the union names
    as it is (exactly so: ``True`` is not an ``int``), anything else read as the rest
    of the union. cattrs' own way takes any instance, ``True`` as an ``int`` too."""
    args = get_args(tp)
    rest = tuple(arg for arg in args if arg not in _PRIMITIVES)
    other: Any = functools.reduce(operator.or_, rest)
    return _exact_scalars(args, converter.get_structure_hook(other), other)


def _exact_scalars(
    args: tuple[Any, ...], otherwise: Callable[[Any, Any], Any], rest: Any
) -> Callable[..., Any]:
    """The hook of a union naming JSON scalar types (``args``): a value whose type is
    exactly one of them passes (so ``True`` is not an ``int``), an integer widens to
    a float where the union has float but not int, and anything else goes to
    ``otherwise(value, rest)``, with no call in between."""
    accepted = frozenset(arg for arg in args if arg in _PRIMITIVES)
    widen = float in accepted and int not in accepted

    def structure(value: Any, _: Any) -> Any:
        kind = type(value)
        if kind in accepted:
            return _finite(value)
        if widen and kind is int:
            return float(value)
        return otherwise(value, rest)

    return structure


def _union_name(tp: Any) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return " or ".join(names.get(arg, "null") for arg in get_args(tp))


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _enum_factory(tp: Any) -> Callable[..., Any]:
    """Match type as well as value, so ``true`` is not a member whose value is 1."""
    members = {(type(m.value), m.value): m for m in tp}

    def structure(value: Any, _: Any) -> Any:
        try:
            return members[(type(value), value)]
        except (KeyError, TypeError):
            raise StrictTypeError(
                "expected one of " + ", ".join(_json_repr(m.value) for m in tp)
            ) from None

    return structure


#: The enum hooks that ``_subclass`` uses, made once per enum.
_enum_hook = functools.cache(_enum_factory)


def _is_enum_keyed(tp: Any) -> bool:
    args = get_args(tp)
    return bool(args) and _is_enum(args[0]) and cols.is_mapping(tp)


def _enum_value(member: enum.Enum, _: Any = None) -> Any:
    return member.value


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _literal_factory(tp: Any) -> Callable[..., Any]:
    """Match type as well as value, so ``true`` is not ``Literal[1]``."""
    allowed = get_args(tp)

    def structure(value: Any, _: Any) -> Any:
        for candidate in allowed:
            if type(candidate) is type(value) and candidate == value:
                return candidate
        raise StrictTypeError("expected one of " + ", ".join(map(_json_repr, allowed)))

    return structure


def _guarded(kind: type, expected: str, inner: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def structure(value: Any, tp: Any) -> Any:
        if not isinstance(value, kind):
            raise _expect(expected, value)
        return inner(value, tp)

    return structure


def make_converter(*, forbid_extra_keys: bool = True) -> cattrs.Converter:
    """Return a new strict converter.

    Args:
        forbid_extra_keys: reject object keys that the target class does not declare,
            so a misspelt field is an error instead of being ignored.
    """
    converter = _make_orjson_converter(forbid_extra_keys=forbid_extra_keys)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(bytes, _structure_bytes)
    # Bytes stay bytes: JSON writes them as base64 text, msgpack as binary.
    converter.register_unstructure_hook(bytes, _same)
    converter.register_structure_hook(_IntKey, _structure_int_key)
    # cattrs writes an enum key as str(member) ("Color.RED"), which nothing reads
    # back: write its value, as for an enum anywhere else.
    converter.register_unstructure_hook_factory(
        _is_enum_keyed,
        lambda tp: converter.gen_unstructure_mapping(tp, key_handler=_enum_value),
    )

    def array_factory(tp: Any) -> Callable[..., Any]:
        return _guarded(list, "an array", _default_array_hook(converter, tp))

    def mapping_factory(tp: Any) -> Callable[..., Any]:
        keys = get_args(tp)[:1]
        if keys == (int,):
            # JSON keys are strings: read "1" as 1, as replies write 1 as "1".
            base = cols.mapping_structure_factory(tp, converter, key_type=_IntKey)
        else:
            base = cols.mapping_structure_factory(tp, converter)
        return _guarded(dict, "an object", base)

    def class_factory(tp: Any) -> Callable[..., Any]:
        base = make_dict_structure_fn(tp, converter, _cattrs_forbid_extra_keys=forbid_extra_keys)
        return _guarded(dict, "an object", base)

    converter.register_structure_hook_factory(_is_enum, _enum_factory)
    converter.register_structure_hook_factory(_is_primitive_union, _primitive_union_factory)
    converter.register_structure_hook_factory(
        _is_mixed_union, lambda tp: _mixed_union_factory(converter, tp)
    )
    converter.register_structure_hook_factory(_is_literal, _literal_factory)
    converter.register_structure_hook_factory(_is_array_type, array_factory)
    converter.register_structure_hook_factory(cols.is_mapping, mapping_factory)
    converter.register_structure_hook_factory(_is_record_class, class_factory)
    return converter


def _is_record_class(tp: Any) -> bool:
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _default_array_hook(converter: cattrs.Converter, tp: Any) -> Callable[..., Any]:
    """The hook for a sequence or set type, without our guard around it: each item
    through its own hook, every failure reported with its index, as cattrs does."""
    args = get_args(tp)
    origin = get_origin(tp) or tp
    if origin is tuple and args and args[-1] is not Ellipsis:
        return _items_hook(converter, tp, list(args), tuple)
    if origin is tuple and hasattr(tp, "__args__") and not args:  # tuple[()]: no items
        return _items_hook(converter, tp, [], tuple)
    item = args[0] if args else Any
    if cols.is_frozenset(tp):
        return _items_hook(converter, tp, item, frozenset)
    if cols.is_any_set(tp):
        return _items_hook(converter, tp, item, set)
    if origin is tuple:
        return _items_hook(converter, tp, item, tuple)
    return cols.list_structure_factory(tp, converter)


def _items_hook(
    converter: cattrs.Converter,
    tp: Any,
    items: Any,
    build: Callable[[list[Any]], Any],
) -> Callable[..., Any]:
    """Structure a JSON array into ``build(...)``: every item as ``items`` (one type),
    or as its position's type (a list of types: a fixed tuple, whose length must
    match; cattrs' own error would reach the client as "invalid value")."""
    fixed = isinstance(items, list)
    kinds = items if fixed else [items]
    hooks = [(kind, converter.get_structure_hook(kind)) for kind in kinds]
    size = len(kinds)
    noun = "item" if size == 1 else "items"

    def structure(value: list[Any], _: Any) -> Any:
        if fixed and len(value) != size:
            raise StrictTypeError(f"expected an array of {size} {noun}, got {len(value)}")
        done: list[Any] = []
        errors: list[Exception] = []
        for index, element in enumerate(value):
            kind, hook = hooks[index if fixed else 0]
            try:
                done.append(element if kind is Any else hook(element, kind))
            except Exception as exc:
                exc.__notes__ = [
                    *getattr(exc, "__notes__", []),
                    IterableValidationNote(f"Structuring {tp} @ index {index}", index, kind),
                ]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return build(done)

    return structure


def _format(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, StrictTypeError):
        return str(exc)
    if get_origin(tp) is Literal:
        return "expected one of " + ", ".join(map(_json_repr, get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "expected one of " + ", ".join(_json_repr(m.value) for m in tp)
    if isinstance(tp, UnionType) or get_origin(tp) is Union:
        names = " | ".join(getattr(a, "__name__", str(a)) for a in get_args(tp))
        return f"expected {names}"
    return format_exception(exc, tp)


def _json_repr(value: object) -> str:
    return (
        orjson.dumps(value).decode() if isinstance(value, str | int | float | bool) else repr(value)
    )


def describe_error(exc: BaseException, tp: Any = None) -> list[dict[str, str]]:
    """Turn a structuring failure into ``[{"path": "$.field", "message": ...}, ...]``.

    ``tp`` is the type that was being structured, used for top-level failures.
    """
    if isinstance(exc, ClassValidationError | IterableValidationError):
        lines = transform_error(exc, path="$", format_exception=_format)
    else:
        lines = [f"{_format(exc, tp)} @ $"]
    details = []
    for line in lines:
        message, _, path = line.rpartition(" @ ")
        details.append({"path": path, "message": message})
    return details
