"""permessage-deflate's negotiation (RFC 7692): the client's offers, the answers.

:func:`negotiate` picks the first of the client's offers the app's
:class:`~wsroute._wire.deflate.Deflate` can honour and writes the answer's
parameters; :func:`server_codec` makes the connection's codec from it. :func:`offer`
and :func:`parse_answer` are the client's side, for the test kit's client. What is
agreed is a :class:`~wsroute._wire.deflate.Settings`; compressing is the
:class:`~wsroute._wire.deflate.Codec`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from .deflate import (
    MAX_WINDOW_BITS,
    MIN_SERVER_WINDOW_BITS,
    MIN_WINDOW_BITS,
    NAME,
    Codec,
    Deflate,
    Settings,
)

_PARAMS: Final = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)


def _bits(value: str | None, low: int) -> int | None:
    """A window-bits value: digits without a leading zero, ``low``-15; else None."""
    if value is None or not value.isdigit() or value.startswith("0") or len(value) > 2:
        return None
    bits = int(value)
    return bits if low <= bits <= MAX_WINDOW_BITS else None


def _accept_offer(
    params: tuple[tuple[str, str | None], ...], allowed: Deflate
) -> tuple[Settings, str] | None:
    """The settings and answer for one offer, or None to decline it (RFC 7692
    section 5: an unknown or repeated parameter, an invalid value, or settings the
    app cannot honour)."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMS or name in seen:
            return None
        seen[name] = value
    server_bits = allowed.server_max_window_bits
    if "server_max_window_bits" in seen:
        asked = _bits(seen["server_max_window_bits"], MIN_WINDOW_BITS)
        if asked is None or asked < MIN_SERVER_WINDOW_BITS:
            return None  # invalid, or 8, which zlib cannot compress with
        server_bits = min(server_bits, asked)
    client_bits = allowed.client_max_window_bits
    if "client_max_window_bits" in seen:
        value = seen["client_max_window_bits"]
        if value is not None:
            asked = _bits(value, MIN_WINDOW_BITS)
            if asked is None:
                return None
            client_bits = min(client_bits, asked)
    elif client_bits < MAX_WINDOW_BITS:
        return None  # the client cannot be told to use a smaller window
    for name in ("server_no_context_takeover", "client_no_context_takeover"):
        if name in seen and seen[name] is not None:
            return None  # these take no value
    settings = Settings(
        server_no_context_takeover=(
            "server_no_context_takeover" in seen or not allowed.server_context_takeover
        ),
        client_no_context_takeover=not allowed.client_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    answer = settings.header(
        server_bits_offered="server_max_window_bits" in seen,
        client_bits_offered="client_max_window_bits" in seen,
    )
    return settings, answer


def negotiate(
    offers: Iterable[tuple[str, tuple[tuple[str, str | None], ...]]], allowed: Deflate
) -> tuple[Settings, str] | None:
    """The first permessage-deflate offer ``allowed`` can honour: its settings and
    the ``Sec-WebSocket-Extensions`` answer; None if there is none (the connection
    then goes uncompressed)."""
    for name, params in offers:
        if name.lower() == NAME:
            accepted = _accept_offer(params, allowed)
            if accepted is not None:
                return accepted
    return None


def server_codec(
    offers: Iterable[tuple[str, tuple[tuple[str, str | None], ...]]], allowed: Deflate | None
) -> Codec | None:
    """The server's codec for a connection whose client offered ``offers``, or None:
    compression off, or no offer it can honour."""
    if allowed is None:
        return None
    agreed = negotiate(offers, allowed)
    return None if agreed is None else Codec(allowed, *agreed)


def offer(allowed: Deflate) -> str:
    """A client's offer for what ``allowed`` says (the test kit's client)."""
    parts = [NAME, "client_max_window_bits"]
    if not allowed.server_context_takeover:
        parts.append("server_no_context_takeover")
    if not allowed.client_context_takeover:
        parts.append("client_no_context_takeover")
    if allowed.server_max_window_bits < MAX_WINDOW_BITS:
        parts.append(f"server_max_window_bits={allowed.server_max_window_bits}")
    return "; ".join(parts)


def parse_answer(answer: tuple[tuple[str, str | None], ...], offered: Deflate) -> Settings:
    """The settings a server's answer to :func:`offer` agrees on, client side.

    Raises:
        ValueError: the answer is not one RFC 7692 allows for that offer.
    """
    seen: dict[str, str | None] = {}
    for name, value in answer:
        if name not in _PARAMS or name in seen:
            raise ValueError(f"invalid permessage-deflate answer parameter {name!r}")
        seen[name] = value
    server_bits = MAX_WINDOW_BITS
    if "server_max_window_bits" in seen:
        bits = _bits(seen["server_max_window_bits"], MIN_WINDOW_BITS)
        if bits is None:
            raise ValueError("invalid server_max_window_bits in the answer")
        server_bits = bits
    client_bits = MAX_WINDOW_BITS
    if "client_max_window_bits" in seen:
        bits = _bits(seen["client_max_window_bits"], MIN_SERVER_WINDOW_BITS)
        if bits is None:
            raise ValueError("invalid client_max_window_bits in the answer")
        client_bits = bits
    return Settings(
        server_no_context_takeover="server_no_context_takeover" in seen,
        client_no_context_takeover="client_no_context_takeover" in seen,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
