"""JSON Schema (2020-12) of Python types, as strict as the app's converter.

A schema here says exactly what the converter reads (and writes): a document it
accepts is valid, one it refuses is not. Where a type allows something a schema
cannot say, or the converter reads it with a hook of the app's own, generation
fails with :class:`~wsroute.contracts.SchemaError` naming the type, where it was
found and what to do, rather than giving a schema looser than the server.

Classes (attrs classes, dataclasses) and enums become named entries of ``$defs``,
referred to by ``$ref``; everything else is written inline. Names are the classes'
own, qualified with their module where two would clash.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping, MutableMapping, MutableSequence, MutableSet, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, Literal

import attrs
import cattrs

from .._converter import make_converter
from .._errors import SchemaError
from . import patterns

__all__ = ["DIALECT", "SchemaSet", "json_schema", "schema_set"]

#: The ``$schema`` of every document made here.
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

_ARRAYS: Final = frozenset({list, tuple, set, frozenset, Sequence, MutableSequence})
_SETS: Final = frozenset({AbstractSet, MutableSet})
_MAPPINGS: Final = frozenset({dict, Mapping, MutableMapping})
_JSON_SCALARS: Final = (str, int, float, bool, type(None))
#: Modules whose hooks are the strict converter's own: any other is the app's.
_OWN_HOOKS: Final = ("wsroute._converter", "cattrs", "builtins")


@attrs.frozen
class SchemaSet:
    """The schemas of several types, sharing one ``$defs``.

    Attributes:
        schemas: one per type asked for, in order: a schema, or ``{"$ref": ...}``
            for a class or enum.
        defs: the schema of every class and enum met, by name.
        names: the name in ``defs`` of each class and enum.
    """

    schemas: tuple[dict[str, Any], ...]
    defs: dict[str, dict[str, Any]]
    names: dict[type, str]


def json_schema(
    tp: Any,
    *,
    converter: cattrs.Converter | None = None,
    overrides: Mapping[Any, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The schema of ``tp`` as one standalone document (``$schema``, ``$defs``).

    Args:
        tp: an attrs class, a dataclass, or any type the converter reads.
        converter: the converter it is read with; by default
            :func:`wsroute.make_converter`'s (use the app's: ``app.converter``).
        overrides: a schema for each type the converter reads with a hook of your
            own, used as given.

    Raises:
        SchemaError: ``tp`` or a type within it has no exact schema.
    """
    found = schema_set([("", tp)], converter=converter, overrides=overrides)
    document = {"$schema": DIALECT, **found.schemas[0]}
    if found.defs:
        document["$defs"] = found.defs
    return document


def schema_set(
    types: Iterable[tuple[str, Any]],
    *,
    converter: cattrs.Converter | None = None,
    ref_template: str = "#/$defs/{name}",
    overrides: Mapping[Any, dict[str, Any]] | None = None,
) -> SchemaSet:
    """The schemas of several types, with the classes and enums they name in one
    ``$defs``.

    Args:
        types: ``(where, type)`` pairs; ``where`` says what the type is for
            (``"route 'get_item' payload"``) in error messages.
        converter: as for :func:`json_schema`.
        ref_template: how a ``$ref`` is written; ``{name}`` is the entry's name
            (AsyncAPI: ``"#/components/schemas/{name}"``).
        overrides: as for :func:`json_schema`.

    Raises:
        SchemaError: a type has no exact schema.
    """
    builder = _Builder(converter or make_converter(), dict(overrides or {}))
    raw = [builder.schema(tp, (where,)) for where, tp in types]
    names = _names(list(builder.defs))
    refs = {cls: ref_template.format(name=name) for cls, name in names.items()}
    return SchemaSet(
        schemas=tuple(_resolve(schema, refs) for schema in raw),
        defs={names[cls]: _resolve(schema, refs) for cls, schema in builder.defs.items()},
        names=names,
    )


def _names(classes: list[type]) -> dict[type, str]:
    """Each class's own name, or ``module.Qualname`` where names clash; what is left
    alike (classes made by one function, twice) gets ``_2``, ``_3``."""
    short: dict[str, int] = {}
    for cls in classes:
        short[cls.__name__] = short.get(cls.__name__, 0) + 1
    names: dict[type, str] = {}
    taken: set[str] = set()
    for cls in classes:
        name = cls.__name__
        if short[name] > 1:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{cls.__module__}.{cls.__qualname__}")
        unique, count = name, 1
        while unique in taken:
            count += 1
            unique = f"{name}_{count}"
        taken.add(unique)
        names[cls] = unique
    return names


def _resolve(value: Any, refs: dict[type, str]) -> Any:
    """A schema with each class placeholder ``{"$ref": cls}`` written as a ref."""
    if isinstance(value, dict):
        return {
            key: refs[item] if key == "$ref" and isinstance(item, type) else _resolve(item, refs)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_resolve(item, refs) for item in value]
    return value


def _describe(tp: Any) -> str:
    if isinstance(tp, type) and tp.__module__ != "builtins":
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")


class _Builder:
    """Walks types, collecting classes and enums into ``defs`` (by class, named later)."""

    def __init__(self, converter: cattrs.Converter, overrides: dict[Any, dict[str, Any]]):
        self.converter = converter
        self.overrides = overrides
        self.forbid_extra_keys = bool(getattr(converter, "forbid_extra_keys", False))
        self.defs: dict[type, dict[str, Any]] = {}

    def fail(self, at: tuple[str, ...], tp: Any, problem: str, fix: str) -> SchemaError:
        head, *fields = at
        where = ", ".join(([head] if head else []) + [f"at {field}" for field in fields])
        return SchemaError(f"{where + ': ' if where else ''}{_describe(tp)} {problem}. {fix}")

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
        if _is_record(tp):
            return self._record(tp, at)
        if _is_record(origin):
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
            " (docs/contracts.md), or pass its schema with overrides={type: schema}",
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
                "Pass its schema with overrides={type: schema}",
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
            self.defs[tp] = _titled({"enum": values}, tp)
        return {"$ref": tp}

    def _union(self, tp: Any, at: tuple[str, ...]) -> dict[str, Any]:
        members = typing.get_args(tp)
        schema = {"anyOf": [self.schema(member, at) for member in members]}
        records = [m for m in members if _is_record(m)]
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
        tags = set.intersection(*(set(_literal_fields(cls)) for cls in records))
        for cls in records:
            for field in _fields(cls):
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
            for field in _fields(cls):
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
            self.defs[cls] = _titled(schema, cls)
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


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _titled(schema: dict[str, Any], cls: type) -> dict[str, Any]:
    """``schema`` with the class's name as title and its docstring as description."""
    titled: dict[str, Any] = {"title": cls.__name__}
    doc = cls.__dict__.get("__doc__")
    generated = dataclasses.is_dataclass(cls) and doc and doc.startswith(f"{cls.__name__}(")
    if doc and not generated and not (isinstance(cls, enum.EnumMeta) and doc == "An enumeration."):
        titled["description"] = inspect.cleandoc(doc)
    return {**titled, **schema}


@attrs.frozen
class _Field:
    name: str
    has_default: bool
    default: Any
    problem: str = ""
    fix: str = ""


def _fields(cls: type) -> list[_Field]:
    """The fields of an attrs class or dataclass as the converter sees them: by
    name, optional when they have a default; those a schema cannot describe carry
    the reason."""
    found = []
    if attrs.has(cls):
        for a in attrs.fields(cls):
            has_default = a.default is not attrs.NOTHING
            default = None if isinstance(a.default, attrs.Factory) else a.default  # type: ignore[arg-type]
            field = _Field(a.name, has_default, default)
            if not a.init:
                field = attrs.evolve(field, problem=_NO_INIT, fix=_NO_INIT_FIX)
            elif a.validator is not None or a.converter is not None:
                field = attrs.evolve(
                    field,
                    problem=f"has a validator or converter on field {a.name!r}, which a schema"
                    " cannot state",
                    fix="Check the value in the handler (raise HandlerError), or pass the"
                    " class's schema with overrides={type: schema}",
                )
            found.append(field)
        return found
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        default = None if f.default is dataclasses.MISSING else f.default
        field = _Field(f.name, has_default, default)
        if not f.init:
            field = attrs.evolve(field, problem=_NO_INIT, fix=_NO_INIT_FIX)
        found.append(field)
    return found


_NO_INIT: Final = "has a field outside __init__, which the converter writes but will not read"
_NO_INIT_FIX: Final = "Make it an __init__ field, or a property"


def _literal_fields(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [name for name, tp in hints.items() if typing.get_origin(tp) is Literal]
