"""Records (attrs classes and dataclasses) as the strict converter reads them.

Which classes are records is the converter's call (``wsroute._converter.is_record``).
The schema builder (``_builder``) asks what a class's fields are, which of them may be
left out, and which it cannot describe: the converter writes a field outside
``__init__`` but never reads it back, and a field's validator or converter checks what
no schema can state. Such fields carry the reason here, so that the builder fails
naming the field rather than give a schema looser than the server.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
from typing import Any, Final, Literal

import attrs


def titled(schema: dict[str, Any], cls: type) -> dict[str, Any]:
    """``schema`` with the class's name as title and its docstring as description."""
    named: dict[str, Any] = {"title": cls.__name__}
    doc = cls.__dict__.get("__doc__")
    generated = dataclasses.is_dataclass(cls) and doc and doc.startswith(f"{cls.__name__}(")
    if doc and not generated and not (isinstance(cls, enum.EnumMeta) and doc == "An enumeration."):
        named["description"] = inspect.cleandoc(doc)
    return {**named, **schema}


@attrs.frozen
class Field:
    """One field of a record; ``problem`` and ``fix`` say why a schema cannot
    describe it, if so."""

    name: str
    has_default: bool
    default: Any
    problem: str = ""
    fix: str = ""


def fields(cls: type) -> list[Field]:
    """The fields of an attrs class or dataclass as the converter sees them: by
    name, optional when they have a default; those a schema cannot describe carry
    the reason."""
    found = []
    if attrs.has(cls):
        for a in attrs.fields(cls):
            has_default = a.default is not attrs.NOTHING
            default = None if isinstance(a.default, attrs.Factory) else a.default  # type: ignore[arg-type]
            field = Field(a.name, has_default, default)
            if not a.init:
                field = attrs.evolve(field, problem=_NO_INIT, fix=_NO_INIT_FIX)
            elif a.validator is not None or a.converter is not None:
                field = attrs.evolve(
                    field,
                    problem=f"has a validator or converter on field {a.name!r}, which a schema"
                    " cannot state",
                    fix="Check the value in the handler (raise HandlerError), or pass the"
                    " class's schema with overrides={type: schema}"
                    " (wsroute asyncapi and typescript: --overrides MODULE:ATTR)",
                )
            found.append(field)
        return found
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        default = None if f.default is dataclasses.MISSING else f.default
        field = Field(f.name, has_default, default)
        if not f.init:
            field = attrs.evolve(field, problem=_NO_INIT, fix=_NO_INIT_FIX)
        found.append(field)
    return found


_NO_INIT: Final = "has a field outside __init__, which the converter writes but will not read"
_NO_INIT_FIX: Final = "Make it an __init__ field, or a property"


def literal_fields(cls: type) -> list[str]:
    """The names of the fields annotated with a ``Literal``: what tells a union's
    classes apart."""
    hints = typing.get_type_hints(cls)
    return [name for name, tp in hints.items() if typing.get_origin(tp) is Literal]
