"""The walk from a Python type to its JSON Schema, as strict as the app's converter.

``schema`` (the public functions) runs one ``Builder`` over the types asked for. Each
type is translated by its kind (scalar, ``Literal``, union, enum, record, tuple, array,
mapping), what it holds first, so that an error names the innermost type at fault; then
the converter's hooks for it are checked, since a hook of the app's own may read what
no schema derived from the type can say. Classes and enums are collected into ``defs``
by class and referred to as ``{"$ref": cls}``, named once the walk is over.
"""

from __future__ import annotations

import datetime
import enum
import types
import typing
from collections.abc import Mapping, MutableMapping, MutableSequence, MutableSet, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, Literal

import cattrs

from .._converter import is_record
from .._errors import SchemaError
from . import patterns
from ._records import fields, literal_fields, titled

_ARRAYS: Final = frozenset({list, tuple, set, frozenset, Sequence, MutableSequence})
_SETS: Final = frozenset({AbstractSet, MutableSet})
_MAPPINGS: Final = frozenset({dict, Mapping, MutableMapping})
_JSON_SCALARS: Final = (str, int, float, bool, type(None))


def describe(tp: Any) -> str:
    if isinstance(tp, type) and tp.__module__ != "builtins":
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")


class Builder:
    """Walks types, collecting classes and enums into ``defs`` (by class, named later)."""

    def __init__(self, converter: cattrs.Converter, overrides: dict[Any, dict[str, Any]]):
        self.converter = converter
        self.overrides = overrides
        self.forbid_extra_keys = bool(getattr(converter, "forbid_extra_keys", False))
        self.defs: dict[type, dict[str, Any]] = {}

    def fail(self, at: tuple[str, ...], tp: Any, problem: str, fix: str) -> SchemaError:
        head, *fields = at
        where = ", ".join(([head] if head else []) + [f"at {field}" for field in fields])
        return SchemaError(f"{where + ': ' if where else ''}{describe(tp)} {problem}. {fix}")

    def schema(self, tp: Any, at: tuple[str, ...]) -> dict[str, Any]:
        if tp in self.overrides:
            return dict(self.overrides[tp])
        if tp is Any:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return self.schema(typing.get_args(tp)[0], at)
        supertype = getattr(tp, "__supertype__", None)  # a NewType
        if supertype is not None:
            return self.schema(supertype, at)
        # What it holds first, so that an error names the innermost type at fault.
        schema = self._translate(tp, origin, at)
        self._check_hooks(tp, at)
        return schema

    def _translate(self, tp: Any, origin: Any, at: tuple[str, ...]) -> dict[str, Any]:
        scalar = _SCALARS.get(tp)
        if scalar is not None:
            return dict(scalar)
        if origin is Literal:
            return self._literal(tp, at)
        if origin in (typing.Union, types.UnionType):
            return self._union(tp, at)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp, at)
        if is_record(tp):
            return self._record(tp, at)
        if is_record(origin):
            raise self.fail(
                at, tp, "is a generic class", "Give the field a concrete (non-generic) class"
            )
        args = typing.get_args(tp)
        if tp is tuple or origin is tuple:
            return self._tuple(tp, args, at)
        if tp in _ARRAYS or origin in _ARRAYS or tp in _SETS or origin in _SETS:
            return (
                {"type": "array", "items": self.schema(args[0], at)} if args else {"type": "array"}
            )
        if tp in _MAPPINGS or origin in _MAPPINGS:
            return self._mapping(tp, args, at)
        self._check_hooks(tp, at)  # the converter's complaint, when it has one
        raise self.fail(
            at,
            tp,
            "has no JSON Schema here",
            "Use attrs classes, dataclasses, enums, Literal, unions, str, int, float, bool,"
            " bytes, datetime, date, lists, sets, tuples and dicts with str or int keys"
            " (docs/contracts.md), or pass its schema with overrides={type: schema}"
            " (wsroute asyncapi and typescript: --overrides MODULE:ATTR)",
        )

    def _check_hooks(self, tp: Any, at: tuple[str, ...]) -> None:
        """The converter must read ``tp`` with its own strict hooks: a hook of the
        app's may read anything, which no schema derived from the type can say."""
        try:
            hook = self.converter.get_structure_hook(tp)
        except Exception as exc:
            raise self.fail(
                at,
                tp,
                f"cannot be read by the app's converter ({exc})",
                "Use a type the converter reads (docs/contracts.md)",
            ) from None
        unstructure = self.converter.get_unstructure_hook(tp)
        for what, fn, generated in (("structure", hook, False), ("unstructure", unstructure, True)):
            module = getattr(fn, "__module__", None)
            if (module is None and generated) or (
                module is not None and module.split(".")[0] in ("wsroute", "cattrs", "builtins")
            ):
                continue
            raise self.fail(
                at,
                tp,
                f"has a {what} hook of the app's own ({getattr(fn, '__qualname__', fn)!r})",
                "Pass its schema with overrides={type: schema}"
                " (wsroute asyncapi and typescript: --overrides MODULE:ATTR)",
            )

    def _literal(self, tp: Any, at: tuple[str, ...]) -> dict[str, Any]:
        values = []
        for value in typing.get_args(tp):
            if isinstance(value, enum.Enum):
                value = value.value
            if not isinstance(value, _JSON_SCALARS):
                raise self.fail(
                    at, tp, f"has a value ({value!r}) JSON cannot write", "Use str, int or bool"
                )
            values.append(value)
        return {"const": values[0]} if len(values) == 1 else {"enum": values}

    def _enum(self, tp: type[enum.Enum], at: tuple[str, ...]) -> dict[str, Any]:
        if tp not in self.defs:
            values = [member.value for member in tp]
            for value in values:
                if not isinstance(value, _JSON_SCALARS):
                    raise self.fail(
                        at,
                        tp,
                        f"has a value ({value!r}) that is not a string, number, boolean or None",
                        "Give its members such values",
                    )
            self.defs[tp] = titled({"enum": values}, tp)
        return {"$ref": tp}

    def _union(self, tp: Any, at: tuple[str, ...]) -> dict[str, Any]:
        members = typing.get_args(tp)
        schema = {"anyOf": [self.schema(member, at) for member in members]}
        records = [m for m in members if is_record(m)]
        if len(records) > 1:
            self._check_tagged(tp, records, at)
        return schema

    def _check_tagged(self, tp: Any, records: list[type], at: tuple[str, ...]) -> None:
        """cattrs picks a union's class by a Literal field they all have, or by a
        required field unique to one; with extra keys refused, a document valid for
        one class is read as that class, so ``anyOf`` says exactly what is read.
        Not so when extra keys pass, or when a Literal field may be left out."""
        if not self.forbid_extra_keys:
            raise self.fail(
                at,
                tp,
                "is a union of classes, read by the keys present, and the converter allows"
                " extra keys, so no schema can say which class a document is read as",
                "Use make_converter(forbid_extra_keys=True) (the default)",
            )
        tags = set.intersection(*(set(literal_fields(cls)) for cls in records))
        for cls in records:
            for field in fields(cls):
                if field.name in tags and field.has_default:
                    raise self.fail(
                        at,
                        tp,
                        f"is told apart by the Literal field {field.name!r}, which"
                        f" {cls.__name__} gives a default, but cattrs needs it present",
                        "Remove the default",
                    )

    def _record(self, cls: type, at: tuple[str, ...]) -> dict[str, Any]:
        if cls not in self.defs:
            self.defs[cls] = {}  # first, so that a class naming itself stops here
            try:
                hints = typing.get_type_hints(cls, include_extras=True)
            except Exception as exc:
                raise self.fail(
                    at, cls, f"has annotations that cannot be resolved ({exc})", "Define them"
                ) from None
            properties: dict[str, Any] = {}
            required: list[str] = []
            for field in fields(cls):
                where = (*at, f"{cls.__name__}.{field.name}")
                if field.problem:
                    raise self.fail(where, cls, field.problem, field.fix)
                schema = self.schema(hints[field.name], where)
                if field.has_default and isinstance(field.default, _JSON_SCALARS):
                    schema = {**schema, "default": field.default}
                properties[field.name] = schema
                if not field.has_default:
                    required.append(field.name)
            schema = {"type": "object", "properties": properties}
            if required:
                schema["required"] = required
            if self.forbid_extra_keys:
                schema["additionalProperties"] = False
            self.defs[cls] = titled(schema, cls)
        return {"$ref": cls}

    def _tuple(self, tp: Any, args: tuple[Any, ...], at: tuple[str, ...]) -> dict[str, Any]:
        if not hasattr(tp, "__args__"):  # bare tuple or typing.Tuple: any items
            return {"type": "array"}
        if args and args[-1] is Ellipsis:
            return {"type": "array", "items": self.schema(args[0], at)}
        if not args or args == ((),):  # tuple[()]
            return {"type": "array", "maxItems": 0}
        return {
            "type": "array",
            "prefixItems": [self.schema(arg, at) for arg in args],
            "items": False,
            "minItems": len(args),
        }

    def _mapping(self, tp: Any, args: tuple[Any, ...], at: tuple[str, ...]) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        if not args:
            return schema
        key = args[0]
        while getattr(key, "__supertype__", None) is not None:
            key = key.__supertype__
        if key is int:
            schema["propertyNames"] = {"pattern": patterns.INT_KEY}
        elif key is not str and key is not Any:
            names = self.schema(key, at)
            if not _all_strings(names, self.defs):
                raise self.fail(
                    at,
                    tp,
                    "has keys that are not strings or integers",
                    "Use str, int, a Literal of strings or an enum of strings as keys",
                )
            schema["propertyNames"] = names
        schema["additionalProperties"] = self.schema(args[1], at)
        return schema


def _all_strings(schema: dict[str, Any], defs: dict[type, dict[str, Any]]) -> bool:
    ref = schema.get("$ref")
    if isinstance(ref, type):
        schema = defs[ref]
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    return values is not None and all(isinstance(value, str) for value in values)


_SCALARS: Final[dict[Any, dict[str, Any]]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer", "minimum": patterns.INT_MIN, "maximum": patterns.INT_MAX},
    float: {"type": "number"},
    str: {"type": "string"},
    bytes: {"type": "string", "contentEncoding": "base64", "pattern": patterns.BASE64},
    datetime.datetime: {"type": "string", "pattern": patterns.DATETIME},
    datetime.date: {"type": "string", "pattern": patterns.DATE},
}
