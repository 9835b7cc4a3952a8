"""The strict hooks for JSON containers: arrays, objects, and records read from objects.

Each is guarded, so that a value of the wrong JSON kind is named as such ("expected an
array, got string") instead of failing somewhere inside cattrs; arrays report every
failing item with its index, and a fixed-length tuple checks its length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, get_args, get_origin

import attrs
import cattrs
from cattrs import cols
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn

from ._scalars import IntKey, StrictTypeError, expect


def is_record(tp: Any) -> bool:
    """Whether ``tp`` is an attrs class or a dataclass: read from a JSON object, field
    by field (the schema builder describes the same ones)."""
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _is_array_type(tp: Any) -> bool:
    # The tuple test first: cattrs' is_sequence raises on tuple[X] (one item), and a
    # predicate that raises is skipped, which left tuple[X] to a hook without our
    # guard against non-arrays.
    return get_origin(tp) is tuple or cols.is_sequence(tp) or cols.is_any_set(tp)


def _guarded(kind: type, expected: str, inner: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def structure(value: Any, tp: Any) -> Any:
        if not isinstance(value, kind):
            raise expect(expected, value)
        return inner(value, tp)

    return structure


def register(converter: cattrs.Converter, *, forbid_extra_keys: bool) -> None:
    """Register the container hooks on ``converter``, after the scalar hooks (cattrs
    tries the hook factories registered last first)."""

    def array_factory(tp: Any) -> Callable[..., Any]:
        return _guarded(list, "an array", _default_array_hook(converter, tp))

    def mapping_factory(tp: Any) -> Callable[..., Any]:
        keys = get_args(tp)[:1]
        if keys == (int,):
            # JSON keys are strings: read "1" as 1, as replies write 1 as "1".
            base = cols.mapping_structure_factory(tp, converter, key_type=IntKey)
        else:
            base = cols.mapping_structure_factory(tp, converter)
        return _guarded(dict, "an object", base)

    def class_factory(tp: Any) -> Callable[..., Any]:
        base = make_dict_structure_fn(tp, converter, _cattrs_forbid_extra_keys=forbid_extra_keys)
        return _guarded(dict, "an object", base)

    converter.register_structure_hook_factory(_is_array_type, array_factory)
    converter.register_structure_hook_factory(cols.is_mapping, mapping_factory)
    converter.register_structure_hook_factory(is_record, class_factory)


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
