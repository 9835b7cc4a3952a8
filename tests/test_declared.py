"""What an app declares for its contracts (wsroute/_declared.py): ``errors=`` of a
route and ``app.declare_event``, checked at registration, listed for tools, and
without effect on what the server does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from wsroute import App, EventInfo, HandlerError, RegistrationError
from wsroute._declared import PROTOCOL_ERRORS, template_parameters
from wsroute.testing import RequestError, open_client


async def noop() -> None:
    pass


def test_errors_are_listed_with_their_descriptions() -> None:
    app = App()
    app.add_direct("a", noop, errors=["not_found", "gone"])
    app.add_broadcast("b", noop, errors={"full": "the room is full"})
    app.add_direct("c", noop)
    errors = {route.name: route.errors for route in app.handlers}
    assert errors == {
        "a": {"not_found": "", "gone": ""},
        "b": {"full": "the room is full"},
        "c": {},
    }


@pytest.mark.parametrize(
    ("errors", "message"),
    [
        ("not_found", r"not the string 'not_found': write errors=\['not_found'\]"),
        (["invalid_data"], "'invalid_data' is the protocol's own"),
        ([""], "must be a non-empty string"),
        ([1], "error code 1 must be a non-empty string"),
        ({"x": 1}, "the description of 'x' must be a string"),
        (5, "a list of codes or a dict"),
    ],
)
def test_bad_errors_are_refused_naming_the_fix(errors: Any, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        App().direct("a", errors=errors)(noop)


def test_the_protocol_codes_are_those_of_the_protocol_page() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    table = page[page.index("## Error codes") :]
    table = table[: table.index("\n\n", table.index("| code |"))]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert documented == set(PROTOCOL_ERRORS)


def test_events_are_declared_in_order() -> None:
    app = App()
    app.declare_event("welcome", dict[str, str], description="hello")
    app.declare_event("said", str, topic="room:{room}")
    app.declare_event("said", str, topic="lobby")
    app.declare_event("ping")
    assert app.events == [
        EventInfo("welcome", dict[str, str], None, "hello"),
        EventInfo("said", str, "room:{room}", None),
        EventInfo("said", str, "lobby", None),
        EventInfo("ping", None, None, None),
    ]
    assert template_parameters("a:{x}:{y_2}") == ["x", "y_2"]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("", {}, "must be a string of 1 to 128 characters"),
        ("wsroute.join", {}, "reserved for the protocol"),
        ("error", {}, "reserved for protocol error replies"),
        ("a", {"topic": ""}, "topic must be a non-empty string"),
        ("a", {"topic": 3}, "topic must be a non-empty string"),
        ("a", {"topic": "room:{}"}, "a parameter is written {name}"),
        ("a", {"topic": "room:{a b}"}, "a parameter is written {name}"),
        ("a", {"topic": "room:{id"}, "a parameter is written {name}"),
        ("a", {"topic": "{x}:{x}"}, "names a parameter twice"),
        ("a", {"description": 3}, "description must be a string"),
        ("twice", {}, "already declared to connections"),
        ("twice", {"topic": "t"}, "already declared on topic 't'"),
    ],
)
def test_bad_events_are_refused(name: str, options: dict[str, Any], message: str) -> None:
    app = App()
    app.declare_event("twice")
    app.declare_event("twice", topic="t")
    with pytest.raises(RegistrationError, match=message):
        app.declare_event(name, **options)


async def test_declarations_change_nothing_at_run_time() -> None:
    app = App()
    app.declare_event("welcome", int)

    @app.direct("fail", errors=["declared"])
    async def fail(code: str) -> None:
        raise HandlerError(code, "as asked")

    async with open_client(app) as client:
        for code in ("declared", "undeclared"):
            with pytest.raises(RequestError) as caught:
                await client.request("fail", code)
            assert caught.value.code == code


async def test_nothing_can_be_declared_once_serving() -> None:
    app = App()
    async with open_client(app):
        with pytest.raises(RegistrationError, match="already started serving"):
            app.declare_event("late")
