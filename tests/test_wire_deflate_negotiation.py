"""permessage-deflate's negotiation (wsroute/_wire/deflate_negotiation.py) per RFC
7692: a table of offers and what the server answers for each app setting, and the
client's side reading the answer back (tests/test_wire_deflate.py: the codec)."""

from __future__ import annotations

import pytest

from wsroute._wire.deflate import Deflate, Settings
from wsroute._wire.deflate_negotiation import negotiate, offer, parse_answer, server_codec
from wsroute._wire.headers import parse_extensions


def offers(header: str) -> list[tuple[str, tuple[tuple[str, str | None], ...]]]:
    return [(e.name, e.params) for e in parse_extensions(header.encode())]


# -- negotiation ---------------------------------------------------------------------

DEFAULT = Deflate()
BOTH_KEPT = Deflate(server_context_takeover=True, client_context_takeover=True)
SMALL_CLIENT = Deflate(client_max_window_bits=10)
SMALL_SERVER = Deflate(server_max_window_bits=11)
PMD = "permessage-deflate"

ACCEPTED = [
    # (offer, what the app allows, the answer, the settings)
    (
        PMD,
        DEFAULT,
        f"{PMD}; server_no_context_takeover; client_no_context_takeover",
        Settings(True, True, 15, 15),
    ),
    # What browsers offer.
    (
        f"{PMD}; client_max_window_bits",
        DEFAULT,
        f"{PMD}; server_no_context_takeover; client_no_context_takeover",
        Settings(True, True, 15, 15),
    ),
    (f"{PMD}; client_max_window_bits", BOTH_KEPT, PMD, Settings(False, False, 15, 15)),
    (f"{PMD}; client_no_context_takeover", BOTH_KEPT, PMD, Settings(False, False, 15, 15)),
    # The client asks the server not to keep its context: it must not.
    (
        f"{PMD}; server_no_context_takeover",
        BOTH_KEPT,
        f"{PMD}; server_no_context_takeover",
        Settings(True, False, 15, 15),
    ),
    # A window the client asks for is answered, the smaller of the two.
    (
        f"{PMD}; server_max_window_bits=10",
        BOTH_KEPT,
        f"{PMD}; server_max_window_bits=10",
        Settings(False, False, 10, 15),
    ),
    (
        f"{PMD}; server_max_window_bits=13",
        SMALL_SERVER,
        f"{PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11",
        Settings(True, True, 11, 15),
    ),
    # The app's window, smaller than 15, is not announced unless asked (Firefox).
    (
        PMD,
        SMALL_SERVER,
        f"{PMD}; server_no_context_takeover; client_no_context_takeover",
        Settings(True, True, 11, 15),
    ),
    (
        f"{PMD}; client_max_window_bits",
        SMALL_CLIENT,
        f"{PMD}; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10",
        Settings(True, True, 15, 10),
    ),
    (
        f'{PMD}; client_max_window_bits="9"',
        SMALL_CLIENT,
        f"{PMD}; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9",
        Settings(True, True, 15, 9),
    ),
    # The first offer that can be honoured wins; other extensions are ignored.
    (
        f"x-webkit-deflate-frame, {PMD}; server_max_window_bits=8, {PMD}; foo, {PMD}",
        BOTH_KEPT,
        PMD,
        Settings(False, False, 15, 15),
    ),
    ("Permessage-Deflate", BOTH_KEPT, PMD, Settings(False, False, 15, 15)),
]


@pytest.mark.parametrize(("header", "allowed", "answer", "settings"), ACCEPTED)
def test_accepted_offers(header: str, allowed: Deflate, answer: str, settings: Settings) -> None:
    assert negotiate(offers(header), allowed) == (settings, answer)


DECLINED = [
    ("", DEFAULT),
    ("x-webkit-deflate-frame", DEFAULT),
    (f"{PMD}; foo", DEFAULT),  # a parameter RFC 7692 does not define
    (f"{PMD}; server_no_context_takeover; server_no_context_takeover", DEFAULT),
    (f"{PMD}; server_no_context_takeover=1", DEFAULT),  # takes no value
    (f"{PMD}; client_no_context_takeover=yes", DEFAULT),
    (f"{PMD}; server_max_window_bits", DEFAULT),  # needs one
    (f"{PMD}; server_max_window_bits=16", DEFAULT),
    (f"{PMD}; server_max_window_bits=7", DEFAULT),
    (f"{PMD}; server_max_window_bits=010", DEFAULT),
    (f"{PMD}; server_max_window_bits=+9", DEFAULT),
    (f"{PMD}; client_max_window_bits=abc", DEFAULT),
    (f"{PMD}; client_max_window_bits=16", DEFAULT),
    # zlib cannot compress with a 256-byte window.
    (f"{PMD}; server_max_window_bits=8", DEFAULT),
    # The app limits the client's window, but the client cannot be told.
    (PMD, SMALL_CLIENT),
]


@pytest.mark.parametrize(("header", "allowed"), DECLINED)
def test_declined_offers(header: str, allowed: Deflate) -> None:
    assert negotiate(offers(header), allowed) is None
    assert server_codec(offers(header), allowed) is None


def test_no_codec_when_compression_is_off() -> None:
    assert server_codec(offers(PMD), None) is None


@pytest.mark.parametrize("allowed", [DEFAULT, BOTH_KEPT, SMALL_SERVER, SMALL_CLIENT])
def test_the_test_kits_offer_is_answered_and_read_back(allowed: Deflate) -> None:
    """A client offering what ``allowed`` says, a server allowing the same: both sides
    read the answer to the same settings."""
    agreed = negotiate(offers(offer(allowed)), allowed)
    assert agreed is not None
    settings, answer = agreed
    [extension] = parse_extensions(answer.encode())
    assert parse_answer(extension.params, allowed) == settings


@pytest.mark.parametrize(
    "answer",
    [
        f"{PMD}; foo",
        f"{PMD}; server_no_context_takeover; server_no_context_takeover",
        f"{PMD}; server_max_window_bits=16",
        f"{PMD}; client_max_window_bits=8",  # zlib cannot compress with it
        f"{PMD}; client_max_window_bits",  # an answer must give a value
    ],
)
def test_an_answer_rfc_7692_does_not_allow_is_refused(answer: str) -> None:
    [extension] = parse_extensions(answer.encode())
    with pytest.raises(ValueError, match="answer"):
        parse_answer(extension.params, DEFAULT)
