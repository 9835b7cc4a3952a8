"""The syntax both sides of the opening handshake share, sans-IO.

The server reads requests and writes answers (``handshake``); the test kit's client
writes requests and reads answers (``client_handshake``). What they have in common is
here: the limit on a head's size, HTTP tokens and header values, comma-separated list
headers, ``Sec-WebSocket-Extensions`` offers, header lines, and the
``Sec-WebSocket-Accept`` token. Plain HTTP answers (``_http``) check the headers an
app gives them with ``is_token`` and ``is_field_value`` too.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

#: The most a request's head may take before its end is found.
MAX_HEAD: Final = 16 * 1024

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# What a header's value may hold: no control characters but HTAB (so no line break).
_VALUE_BYTES = bytes((9, *range(0x20, 0x7F), *range(0x80, 0x100)))
#: Never in a request line (its CR aside).
NOT_IN_LINE = re.compile(rb"[^\x20-\x7e\r]")

Headers = list[tuple[bytes, bytes]]


class Extension(NamedTuple):
    """One extension the client offered: ``permessage-deflate;
    client_max_window_bits`` is ``Extension("permessage-deflate",
    (("client_max_window_bits", None),))``."""

    name: str
    params: tuple[tuple[str, str | None], ...]


def tokens(values: list[bytes] | None) -> list[str]:
    """The elements of comma-separated header values, empty ones left out. (Callers
    compare list tokens in lower case themselves where HTTP says so.)"""
    if not values:
        return []
    if len(values) == 1 and values[0].isalpha():  # one token: most often
        return [values[0].decode("ascii")]
    return [
        item
        for value in values
        for item in (p.strip() for p in value.decode("ascii").split(","))
        if item
    ]


def parse_extensions(value: bytes) -> list[Extension]:
    """A ``Sec-WebSocket-Extensions`` value's extensions, with their parameters.

    Raises:
        UnicodeDecodeError: the value is not ASCII.
    """
    return extension_offers([value])


def extension_offers(values: list[bytes] | None) -> list[Extension]:
    """``name; param; param=value`` offers, as RFC 6455 section 9.1 writes them."""
    offers = []
    for offer in tokens(values):
        name, *params = (part.strip() for part in offer.split(";"))
        parsed = []
        for param in params:
            key, equals, value = param.partition("=")
            parsed.append((key.strip(), value.strip().strip('"') if equals else None))
        offers.append(Extension(name, tuple(parsed)))
    return offers


# An answer's header lines, as a client reads them: names in lower case, in order.
def parse_headers(lines: Sequence[bytes]) -> Headers:
    headers = []
    for line in lines:
        name, _, value = line.removesuffix(b"\r").partition(b":")
        headers.append((name.lower(), value.strip(b" \t")))
    return headers


def accept_token(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def is_token(name: bytes) -> bool:
    """Whether ``name`` may be a header's name (an HTTP token)."""
    return bool(name) and not name.translate(None, _TOKEN_BYTES)


def is_field_value(value: bytes) -> bool:
    """Whether ``value`` may be a header's value: no line break may sneak another
    header (or a body) into a message."""
    return not value.translate(None, _VALUE_BYTES)


def header_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    lines = []
    for name, value in headers:
        if not is_token(name) or not is_field_value(value):
            raise ValueError(f"invalid response header {name!r}: {value!r}")
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)
