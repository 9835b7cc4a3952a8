"""The strict hooks for JSON scalars: a value must already have the right JSON type.

cattrs coerces by default (``int("1")``, ``str(None)``, ``bool("no")``), which turns
client mistakes into silent data corruption. Here the only widening is an integer
where a float is expected, because JSON has a single number type. Enums and
``Literal`` match type as well as value, and unions of scalars take exactly the types
they name (``True`` is not an ``int``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import math
import operator
import re
from collections.abc import Callable
from types import UnionType
from typing import Any, Literal, NewType, Union, get_args, get_origin

import cattrs
import orjson
from cattrs import cols


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


def expect(expected: str, value: object) -> StrictTypeError:
    return StrictTypeError(f"expected {expected}, got {_json_type(value)}")


def _structure_int(value: Any, tp: type) -> Any:
    if type(value) is not int:
        raise expect("an integer", value)
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
        raise expect("a number", value)
    if tp is not float:
        return _subclass(value, tp)
    return value


def _structure_str(value: Any, tp: type) -> Any:
    if type(value) is not str:
        raise expect("a string", value)
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
        # Whole quanta, padding only at the end (the schema's pattern): CPython would
        # also take a quantum followed by a stray "=".
        if len(value) % 4 or -1 < value.find("=") < len(value) - 2:
            raise StrictTypeError("expected base64 text")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise StrictTypeError("expected base64 text") from None
    raise expect("base64 text or binary", value)


def _same(value: bytes) -> bytes:
    return value


def _structure_bool(value: Any, _: type) -> bool:
    if type(value) is not bool:
        raise expect("a boolean", value)
    return value


#: The key of a ``dict[int, X]``, which JSON writes as a string.
IntKey = NewType("IntKey", int)
_INT_KEY = re.compile(r"0|-?[1-9][0-9]{0,19}")


def _structure_int_key(value: Any, _: type) -> int:
    """An object key for ``dict[int, X]``: an integer written in its shortest decimal
    form, as orjson writes one (so no "+1", "01", " 1" or "1_000", which int() takes),
    within 64 bits like any integer wsroute reads."""
    if type(value) is str and _INT_KEY.fullmatch(value):
        number = int(value)
        if -(2**63) <= number < 2**64:
            return number
    raise StrictTypeError(f"expected an integer key, got {json_repr(value)}")


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
                "expected one of " + ", ".join(json_repr(m.value) for m in tp)
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
        raise StrictTypeError("expected one of " + ", ".join(map(json_repr, allowed)))

    return structure


def json_repr(value: object) -> str:
    return (
        orjson.dumps(value).decode() if isinstance(value, str | int | float | bool) else repr(value)
    )


def register(converter: cattrs.Converter) -> None:
    """Register the scalar hooks on ``converter``, before the container hooks: cattrs
    tries the hook factories registered last first."""
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(bytes, _structure_bytes)
    # Bytes stay bytes: JSON writes them as base64 text, msgpack as binary.
    converter.register_unstructure_hook(bytes, _same)
    converter.register_structure_hook(IntKey, _structure_int_key)
    # cattrs writes an enum key as str(member) ("Color.RED"), which nothing reads
    # back: write its value, as for an enum anywhere else.
    converter.register_unstructure_hook_factory(
        _is_enum_keyed,
        lambda tp: converter.gen_unstructure_mapping(tp, key_handler=_enum_value),
    )
    converter.register_structure_hook_factory(_is_enum, _enum_factory)
    converter.register_structure_hook_factory(_is_primitive_union, _primitive_union_factory)
    converter.register_structure_hook_factory(
        _is_mixed_union, lambda tp: _mixed_union_factory(converter, tp)
    )
    converter.register_structure_hook_factory(_is_literal, _literal_factory)
