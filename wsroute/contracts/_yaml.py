"""Block YAML for JSON documents, without a YAML library.

``wsroute asyncapi --format yaml`` writes the document as people write AsyncAPI files:
nested blocks, docstrings as literal blocks. Only JSON's values occur (dicts with
string keys, lists, strings, integers, finite floats, booleans, ``None``), so a small
emitter suffices, and the output reads back the same under YAML 1.1 (PyYAML) and 1.2:
strings that could be taken for anything else (``yes``, ``1e3``, ``null``, ``:``) are
quoted, and quoted strings use JSON's escapes plus YAML's for what YAML cannot print.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

#: Plain (unquoted) scalars: word-like text that no YAML 1.1 or 1.2 resolver reads
#: as a number, boolean, null, date or anything but a string.
_PLAIN: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$./\-]*(?: [A-Za-z0-9_$./\-()';=?+<]+)*")
_RESERVED: Final = frozenset(
    word
    for base in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")
    for word in (base, base.capitalize(), base.upper())
)
_INDENT: Final = "  "
_LONGEST_KEY: Final = 1000


def dumps(value: Any) -> str:
    """``value`` (JSON's types only) as a block YAML document, ending in a newline.

    Raises:
        TypeError: a value JSON cannot hold (a tuple is taken for a list).
        ValueError: a float that is not finite.
    """
    lines: list[str] = []
    if isinstance(value, dict | list | tuple) and value:
        _block(value, 0, lines)
    else:
        lines.append(_scalar(value, 0))
    return "\n".join(lines) + "\n"


def _block(value: dict[str, Any] | list[Any] | tuple[Any, ...], depth: int, out: list[str]) -> None:
    pad = _INDENT * depth
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"a YAML mapping key here is a string, not {key!r}")
            written = _string(key, depth, key=True)
            if len(written) > _LONGEST_KEY:  # YAML reads implicit keys up to 1024 chars
                out.append(f"{pad}? {written}")
                written = ""
            _entry(f"{pad}{written}:", item, depth + 1, out)
    else:
        for item in value:
            if isinstance(item, dict) and item:
                # The first key goes on the dash's line: "- type: object".
                nested: list[str] = []
                _block(item, depth + 1, nested)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out.extend(nested[1:])
            else:
                _entry(f"{pad}-", item, depth + 1, out)


def _entry(head: str, value: Any, depth: int, out: list[str]) -> None:
    if isinstance(value, dict | list | tuple) and value:
        out.append(head)
        _block(value, depth, out)
    else:
        out.append(f"{head} {_scalar(value, depth)}")


def _scalar(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"JSON has no {value!r}")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if "." not in mantissa:  # YAML 1.1 reads "1e+20" as a string
            text = f"{mantissa}.0{e}{exponent}"
        return text
    if isinstance(value, str):
        return _string(value, depth, key=False)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    raise TypeError(f"JSON has no {type(value).__name__}")


def _string(text: str, depth: int, *, key: bool) -> str:
    if _PLAIN.fullmatch(text) and text not in _RESERVED:
        return text
    if not key and "\n" in text and _literal_ok(text):
        # A literal block keeps docstrings readable; "|-" drops the final newline,
        # "|" keeps exactly one.
        indicator = "|" if text.endswith("\n") else "|-"
        pad = _INDENT * depth
        body = text[:-1] if text.endswith("\n") else text
        return indicator + "".join(f"\n{pad}{line}" if line else "\n" for line in body.split("\n"))
    return _quoted(text)


def _literal_ok(text: str) -> bool:
    """Whether a literal block gives back exactly ``text``."""
    return (
        not text.startswith((" ", "\n"))  # would need an indentation indicator
        and not text.endswith("\n\n")  # would need "keep" chomping
        and "\r" not in text
        and all(_printable(char) or char in "\n\t" for char in text)
        and not any(line.endswith((" ", "\t")) for line in text.split("\n"))
    )


def _printable(char: str) -> bool:
    """YAML's printable set (1.2, section 5.1), minus the line breaks it would fold
    (NEL, U+2028, U+2029)."""
    code = ord(char)
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or 0x10000 <= code <= 0x10FFFF
    ) and char not in "\u2028\u2029"


def _quoted(text: str) -> str:
    # JSON's escapes are YAML's; what JSON leaves raw but YAML cannot print is
    # escaped by code point.
    out = []
    for char in json.dumps(text, ensure_ascii=False)[1:-1]:
        if _printable(char) or char == "\t":
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return f'"{"".join(out)}"'
