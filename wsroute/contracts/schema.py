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

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
import cattrs

from .._converter import make_converter
from ._builder import Builder

__all__ = ["DIALECT", "SchemaSet", "json_schema", "schema_set"]

#: The ``$schema`` of every document made here.
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


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
    builder = Builder(converter or make_converter(), dict(overrides or {}))
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
