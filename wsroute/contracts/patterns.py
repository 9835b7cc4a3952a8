"""Regular expressions for the strings the converter reads: base64, integer keys,
dates and datetimes, written for JSON Schema's ``pattern``.

``pattern`` is an ECMA-262 regular expression that is not anchored, so each one
here is wrapped in ``^...$``. Python's ``re`` (which Python validators use) also lets
``$`` match before a final newline, which ECMA does not; the ``(?!\\n)`` after it
keeps both readings the same.
"""

from __future__ import annotations

from typing import Final

from .._protocol import _INT64_MIN, _UINT64_MAX

#: The integers the protocol carries: 64 bits, signed or not (``_protocol``).
INT_MIN: Final = _INT64_MIN
INT_MAX: Final = _UINT64_MAX


def anchored(body: str) -> str:
    """``body`` as a whole-string pattern, read alike by ECMA-262 and Python."""
    return f"^(?:{body})$(?!\\n)"


def _up_to(limit: str) -> str:
    """Decimal numbers from 1 to ``limit`` without leading zeros: shorter numbers,
    then, digit by digit, those of ``limit``'s length that stay below it."""
    size = len(limit)
    parts = [f"[1-9][0-9]{{0,{size - 2}}}"] if size > 1 else []
    for index, digit in enumerate(limit):
        low = "1" if index == 0 else "0"
        top = int(digit) - 1
        if top >= int(low):
            rest = size - index - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            parts.append(f"{limit[:index]}[{low}-{top}]{tail}")
    parts.append(limit)
    return "|".join(parts)


#: A ``dict[int, X]`` key as the converter reads it: an integer in its shortest
#: decimal form (no "+", leading zero or "-0"), within the protocol's range.
INT_KEY: Final = anchored(f"0|{_up_to(str(INT_MAX))}|-(?:{_up_to(str(-INT_MIN))})")

#: Base64 as ``base64.b64decode(validate=True)`` reads it: the standard alphabet,
#: padded to a multiple of four characters, nothing else (no line breaks).
BASE64: Final = anchored("(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

_YEAR = "(?!0000)[0-9]{4}"
_MONTH_DAY = (
    "(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8])"
)
# Leap years: divisible by 4 but not by 100, or by 400 (year 0000 does not exist).
_LEAP_DAY = (
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
)
_DATE = f"{_YEAR}-(?:{_MONTH_DAY})|{_LEAP_DAY}"
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
_OFFSET = "Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]"

#: A calendar date, ``YYYY-MM-DD``, that exists.
DATE: Final = anchored(_DATE)
#: An RFC 3339 date and time whose offset may be left out (a naive datetime, as
#: orjson writes one): ``2024-05-01T12:30:00``, ``...00.250Z``, ``...00+02:00``.
DATETIME: Final = anchored(f"(?:{_DATE})T{_TIME}(?:{_OFFSET})?")
