"""The close codes and reasons of ``wsroute._wire.closes`` against the close-code table
of docs/protocol.md, read from the page (the module says it is that table).

tests/test_wire_closes.py holds the module's codes against wsproto's and the
``websockets`` library's rules; this file holds them against the documentation.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from wsroute._wire import closes

PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def table() -> list[tuple[str, str, str]]:
    """The rows of the "Close codes" table: (code, when, sent by the server)."""
    text = PROTOCOL_MD.read_text()
    section = text[text.index("## Close codes") :]
    lines = section[section.index("| code |") :].split("\n\n", 1)[0].splitlines()
    rows = []
    for line in lines[2:]:
        code, when, sent = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows.append((code, when, sent))
    return rows


def documented() -> dict[int, tuple[str, str]]:
    """The rows for one code each: code -> (when, sent by the server)."""
    return {int(code): (when, sent) for code, when, sent in table() if code.isdigit()}


def quoted(text: str) -> set[str]:
    return set(re.findall(r"`([^`]*)`", text))


def section(title: str) -> dict[str, tuple[int, str]]:
    """The (code, reason) constants under the ``# -- <title>`` comment of the module."""
    source = inspect.getsource(closes)
    body = source.split(f"# -- {title}", 1)[1].split("\n# -- ", 1)[0]
    names = re.findall(r"^([A-Z][A-Z0-9_]*): Final = \(", body, flags=re.MULTILINE)
    assert names, title
    return {name: getattr(closes, name) for name in names}


SERVER_CLOSES = section("why the server closes")
PROTOCOL_FAILURES = section("why the protocol fails")
UNDOCUMENTED_REASONS: dict[str, str] = {}


def test_the_range_row_is_exactly_the_codes_that_may_be_sent() -> None:
    [ranges] = [code for code, _, _ in table() if "," in code]
    allowed: set[int] = set()
    for part in ranges.split(","):
        low, high = (int(n) for n in part.strip().split("\N{EN DASH}"))
        allowed |= set(range(low, high + 1))
    assert {code for code in range(70_000) if closes.is_sendable(code)} == allowed


def test_codes_only_ever_reported_are_never_sent_nor_accepted() -> None:
    never = {code for code, (_, sent) in documented().items() if sent.startswith("never")}
    assert never == {closes.NO_STATUS, closes.ABNORMAL} == {1005, 1006}
    for code in never:
        assert not closes.is_sendable(code) and not closes.is_receivable(code)


def test_each_documented_code_is_a_named_constant() -> None:
    named = {
        value for name, value in vars(closes).items() if name.isupper() and isinstance(value, int)
    }
    assert set(documented()) <= named


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=UNDOCUMENTED_REASONS[name]))
        if name in UNDOCUMENTED_REASONS
        else name
        for name in SERVER_CLOSES
    ],
)
def test_each_close_of_the_server_is_in_its_codes_row_with_its_reason(name: str) -> None:
    code, reason = SERVER_CLOSES[name]
    assert code in documented(), f"no row for {code}"
    when, sent = documented()[code]
    assert sent == "yes"
    assert reason in quoted(when), f"{reason!r} is not among {sorted(quoted(when))}"


def test_the_message_too_big_reason_is_the_documented_one() -> None:
    when, sent = documented()[closes.MESSAGE_TOO_BIG]
    [template] = [text for text in quoted(when) if " N " in text]
    assert closes.too_big(1000) == (1009, template.replace(" N ", " 1000 "))
    assert sent == "yes"


def test_every_code_the_protocol_fails_with_has_a_row() -> None:
    codes = {code for code, _ in PROTOCOL_FAILURES.values()}
    codes |= {closes.reserved_opcode(3)[0], closes.invalid_close_code(5000)[0]}
    assert codes - set(documented()) == set()
