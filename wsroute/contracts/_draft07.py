"""JSON Schema 2020-12 (``schema``) in the dialect AsyncAPI 3.0 reads.

AsyncAPI 3.0's default schema format is a superset of JSON Schema draft-07, which
the official parser checks documents against. The schemas made by ``schema`` use one
keyword draft-07 lacks, ``prefixItems`` (fixed tuples): draft-07 says the same with
``items`` as an array and ``additionalItems``. Everything else they use means the
same in both.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def lower(value: Any) -> Any:
    """``value`` with every 2020-12 tuple written the draft-07 way, ``$schema`` dropped."""
    if isinstance(value, list):
        return [lower(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: lower(item) for key, item in value.items() if key != "$schema"}
    if "prefixItems" in out:
        rest = out.pop("items", True)
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = rest
    return out


def without_null(schema: Schema) -> Schema:
    """``schema`` without its ``null`` alternative: the data of an event whose handler
    may return ``None``, which publishes nothing."""
    members = schema.get("anyOf")
    if not isinstance(members, list):
        return schema
    kept = [member for member in members if member != {"type": "null"}]
    if len(kept) == len(members) or not kept:
        return schema
    if len(kept) == 1 and len(schema) == 1:
        return dict(kept[0])
    return {**schema, "anyOf": kept}
