"""The decorator forms of registration (``wsroute._decorators``). That they return the
function unchanged and register what ``add_*`` would: tests/test_app.py."""

from __future__ import annotations

from typing import Any

import pytest

from wsroute import App, RegistrationError


async def ping() -> str:
    return "pong"


@pytest.mark.parametrize(
    ("decorator", "fix"),
    [
        ("direct", '@app.direct("ping"), not @app.direct,'),
        ("broadcast", '@app.broadcast("ping"), not @app.broadcast,'),
        ("info", '@app.info("ping"), not @app.info,'),
        ("get", '@app.get("/ping"), not @app.get,'),
    ],
)
def test_a_decorator_without_its_name_fails_and_says_how_to_write_it(
    decorator: str, fix: str
) -> None:
    # `@app.direct` above a function calls app.direct(ping): without this check the
    # decorator it returned was dropped and the handler silently never registered.
    app = App()
    bare: Any = getattr(app, decorator)
    with pytest.raises(RegistrationError) as info:
        bare(ping)
    assert str(info.value) == (
        f"@app.{decorator} needs the {'path' if decorator == 'get' else 'message type'}:"
        f" write {fix} above tests.test_decorators.ping"
    )
    assert app.handlers == []


@pytest.mark.parametrize(
    ("decorator", "what"),
    [
        ("accept", "accept hook"),
        ("frame_handler", "frame handler"),
        ("on_connect", "on_connect hook"),
        ("on_disconnect", "on_disconnect hook"),
        ("on_broker_state", "on_broker_state hook"),
        ("lifespan", "lifespan"),
    ],
)
def test_a_decorator_that_takes_the_function_fails_with_parentheses_and_says_how_to_write_it(
    decorator: str, what: str
) -> None:
    # `@app.on_connect()` calls app.on_connect() with no function: Python's own error
    # was a TypeError about a missing positional argument 'fn'.
    app = App()
    called: Any = getattr(app, decorator)
    with pytest.raises(RegistrationError) as info:
        called()
    assert str(info.value) == (
        f"@app.{decorator} is written without parentheses: write @app.{decorator} above the"
        f" {what}, not @app.{decorator}()"
    )
    assert (app._on_connect, app._on_disconnect, app._on_broker_state) == ([], [], [])
    assert (app.accept_hook, app.has_frame_handler, app._lifespans) == (None, False, [])
