"""The block YAML emitter (wsroute/contracts/_yaml.py): whatever JSON holds reads back
the same with PyYAML (a YAML 1.1 reader, the stricter one for strings), and the
output looks like YAML people write."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from wsroute.contracts._yaml import dumps

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]))
    | st.sampled_from(["yes", "No", "~", "null", "1e3", "0x1F", "- a", "a: b", "#x", "", " "])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=20) | st.sampled_from(["on", "?", "$ref"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_json_value_reads_back_the_same(value: Any) -> None:
    assert yaml.safe_load(dumps(value)) == value


@pytest.mark.parametrize(
    "text",
    [
        "line one\nline two",
        "ends with a newline\n",
        "a blank line\n\nbetween",
        "  leading spaces\nsecond",
        "trailing spaces  \nsecond",
        "two final newlines\n\n",
        "tab\tinside\nsecond",
        "NEL \x85 and LS \u2028 and BOM \ufeff\nsecond",
        "control \x07 and DEL \x7f\nsecond",
        "emoji \U0001f600 and é\nsecond",
        "# not a comment\n- not a list\nkey: not a map",
        "\nstarts with a newline",
    ],
)
def test_awkward_strings_read_back(text: str) -> None:
    document = {"description": text, "list": [text]}
    assert yaml.safe_load(dumps(document)) == document


def test_the_output_is_block_yaml() -> None:
    document = {
        "asyncapi": "3.0.0",
        "info": {"title": "Items API", "description": "First line.\n\nSecond paragraph."},
        "required": ["type", "data"],
        "items": [{"type": "integer", "minimum": 1}, {"const": True}],
        "empty": {},
        "none": [],
        "float": 1e20,
    }
    assert dumps(document) == (
        'asyncapi: "3.0.0"\n'
        "info:\n"
        "  title: Items API\n"
        "  description: |-\n"
        "    First line.\n"
        "\n"
        "    Second paragraph.\n"
        "required:\n"
        "  - type\n"
        "  - data\n"
        "items:\n"
        "  - type: integer\n"
        "    minimum: 1\n"
        "  - const: true\n"
        "empty: {}\n"
        "none: []\n"
        "float: 1.0e+20\n"
    )


def test_what_json_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON has no nan"):
        dumps({"x": math.nan})
    with pytest.raises(TypeError, match="JSON has no set"):
        dumps([{1}])
    with pytest.raises(TypeError, match="key here is a string"):
        dumps({1: "a"})
