"""The strict cattrs converter every App uses by default.

cattrs coerces by default (``int("1")``, ``str(None)``, ``bool("no")``, ``list("ab")``),
which turns client mistakes into silent data corruption. Here a JSON value must already
have the right JSON type: the only widening is an integer where a float is expected,
because JSON has a single number type. Built on the orjson preconf converter so
unstructuring matches what orjson can encode.

The hooks live by kind: ``_scalars`` (numbers, strings, booleans, bytes, enums,
literals, unions of scalars) and ``_containers`` (arrays, objects, records). Here:
putting them together, and turning a failure into per-field messages.
"""

from __future__ import annotations

import enum
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.preconf.orjson import make_converter as _make_orjson_converter
from cattrs.v import format_exception, transform_error

from . import _containers, _scalars
from ._containers import is_record as is_record
from ._scalars import StrictTypeError as StrictTypeError
from ._scalars import json_repr

__all__ = ["StrictTypeError", "describe_error", "is_record", "make_converter"]


def make_converter(*, forbid_extra_keys: bool = True) -> cattrs.Converter:
    """Return a new strict converter.

    Args:
        forbid_extra_keys: reject object keys that the target class does not declare,
            so a misspelt field is an error instead of being ignored.
    """
    converter = _make_orjson_converter(forbid_extra_keys=forbid_extra_keys)
    _scalars.register(converter)
    _containers.register(converter, forbid_extra_keys=forbid_extra_keys)
    return converter


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


def _format(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, StrictTypeError):
        return str(exc)
    if get_origin(tp) is Literal:
        return "expected one of " + ", ".join(map(json_repr, get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "expected one of " + ", ".join(json_repr(m.value) for m in tp)
    if isinstance(tp, UnionType) or get_origin(tp) is Union:
        names = " | ".join(getattr(a, "__name__", str(a)) for a in get_args(tp))
        return f"expected {names}"
    return format_exception(exc, tp)
