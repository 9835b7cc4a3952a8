"""The App (``wsroute._app``): registration through the decorators, default options, and
the handler table frozen once running. Running it: tests/test_serving.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from wsroute import (
    App,
    Connection,
    Disconnect,
    RegistrationError,
    make_converter,
)
from wsroute._routing import RouteKind
from wsroute.brokers import MemoryBroker
from wsroute.testing import open_client


@attrs.define
class Item:
    id: int


class Plain:
    def __init__(self, value: Any) -> None:
        self.value = value


async def handle(msg: Item, conn: Connection) -> None: ...


async def other(msg: Item) -> None: ...


# -- decorators ----------------------------------------------------------------------


def test_decorators_return_the_function_unchanged() -> None:
    app = App()

    async def fn(conn: Connection) -> None: ...

    async def life() -> AsyncIterator[None]:
        yield

    assert app.direct("d")(fn) is fn
    assert app.broadcast("b")(fn) is fn
    assert app.broadcast("c", topic="room")(fn) is fn
    assert app.on_connect(fn) is fn
    assert app.on_disconnect(fn) is fn
    assert app.lifespan(life) is life
    assert [(h.name, h.kind, h.fn) for h in app.handlers] == [
        ("d", RouteKind.DIRECT, fn),
        ("b", RouteKind.BROADCAST, fn),
        ("c", RouteKind.BROADCAST, fn),
    ]


def test_broadcast_topics() -> None:
    app = App(default_topic="lobby")

    def per_item(payload: Item, conn: Connection) -> str:
        return f"item:{payload.id}"

    app.broadcast("default")(handle)
    app.broadcast("fixed", topic="room")(handle)
    app.broadcast("computed", topic=per_item)(handle)
    topics = {h.name: h.topic for h in app.handlers}
    assert topics == {"default": "lobby", "fixed": "room", "computed": per_item}


def test_duplicate_route_of_the_same_kind_names_both_functions() -> None:
    app = App()
    app.direct("x")(handle)
    with pytest.raises(RegistrationError) as info:
        app.direct("x")(other)
    message = str(info.value)
    assert "tests.test_app.handle" in message
    assert "tests.test_app.other" in message
    assert "rename one" in message
    # The first registration is kept.
    assert [h.fn for h in app.handlers] == [handle]


def test_duplicate_broadcast_is_rejected() -> None:
    app = App()
    app.broadcast("x")(handle)
    with pytest.raises(RegistrationError, match="broadcast handler for 'x' is already"):
        app.broadcast("x", topic="other")(other)


def test_direct_and_broadcast_may_share_a_name() -> None:
    app = App()
    app.direct("chat")(handle)
    app.broadcast("chat")(other)
    assert [(h.name, h.kind, h.fn) for h in app.handlers] == [
        ("chat", RouteKind.DIRECT, handle),
        ("chat", RouteKind.BROADCAST, other),
    ]


def test_registration_errors_at_decoration_time() -> None:
    app = App()

    def sync(msg: Item) -> None: ...

    with pytest.raises(RegistrationError, match=r"write `async def sync\(\.\.\.\)`"):
        app.direct("s")(sync)
    with pytest.raises(RegistrationError, match="async def sync"):
        app.broadcast("s")(sync)
    assert app.handlers == []


async def test_unstructurable_annotation_works_after_registering_a_hook(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = App()

    async def plain(msg: Plain) -> int:
        return int(msg.value)

    with pytest.raises(RegistrationError, match=r"app\.converter\.register_structure_hook"):
        app.direct("p")(plain)
    app.converter.register_structure_hook(Plain, lambda value, _: Plain(value))
    app.direct("p")(plain)
    async with open_client(app) as client:
        assert await client.request("p", 3) == 3


async def test_app_uses_the_given_converter(autojump_clock: trio.abc.Clock) -> None:
    converter = make_converter(forbid_extra_keys=False)
    app = App(converter=converter)
    assert app.converter is converter

    @app.direct("x")
    async def x(msg: Item) -> int:
        return msg.id

    async with open_client(app) as client:
        assert await client.request("x", {"id": 1, "extra": 2}) == 1  # extra keys allowed


@pytest.mark.parametrize("name", ["", "n" * 129, "error"])
@pytest.mark.parametrize("kind", ["direct", "broadcast"])
def test_bad_names_are_rejected(name: str, kind: str) -> None:
    app = App()
    decorator = app.direct(name) if kind == "direct" else app.broadcast(name)
    with pytest.raises(RegistrationError):
        decorator(handle)


def test_name_of_128_chars_is_accepted() -> None:
    app = App()
    app.direct("n" * 128)(handle)
    assert app.handlers[0].name == "n" * 128


def test_broadcast_without_topic_needs_a_default_topic() -> None:
    app = App(default_topic=None)
    with pytest.raises(
        RegistrationError, match=r"pass topic=\.\.\. or give the App a default_topic"
    ):
        app.broadcast("b")(handle)
    app.broadcast("b", topic="room")(handle)
    assert app.handlers[0].topic == "room"


@pytest.mark.parametrize("topic", [3, b"room", ["room"], ""])
def test_broadcast_topic_must_be_a_string_or_function(topic: Any) -> None:
    with pytest.raises(RegistrationError, match="topic"):
        App().broadcast("b", topic=topic)(handle)


def test_broadcast_topic_function_must_not_be_async() -> None:
    async def topic(payload: Item, conn: Connection) -> str:
        return "room"

    with pytest.raises(RegistrationError, match="non-async"):
        App().broadcast("b", topic=topic)(handle)


def test_hook_with_an_unfillable_parameter_is_rejected() -> None:
    app = App()

    async def on_connect(conn: Connection, count: int) -> None: ...

    with pytest.raises(RegistrationError, match="cannot tell what to pass as 'count'"):
        app.on_connect(on_connect)
    with pytest.raises(RegistrationError, match="cannot tell what to pass as 'count'"):
        app.on_disconnect(on_connect)


# -- options (their validation: tests/test_config.py) ---------------------------------


def test_default_options() -> None:
    app = App()
    assert app.config.default_topic == "all"
    assert app.config.max_concurrency == 1
    assert isinstance(app.broker, MemoryBroker)
    assert not app.running
    assert app.connections == []


# -- lifespan registration -----------------------------------------------------------


def test_lifespan_forms_are_accepted() -> None:
    app = App()

    async def generator() -> AsyncIterator[None]:
        yield

    async def generator_with_app(app: App) -> AsyncIterator[None]:
        yield

    def manager() -> AbstractAsyncContextManager[None]:
        return asynccontextmanager(generator)()

    for fn in (generator, generator_with_app, manager):
        assert app.lifespan(fn) is fn


def test_lifespan_with_two_parameters_is_rejected() -> None:
    async def two(app: App, extra: int) -> AsyncIterator[None]:
        yield

    with pytest.raises(RegistrationError, match="at most one parameter"):
        App().lifespan(two)


# -- once running --------------------------------------------------------------------


def _registrations(app: App) -> list[tuple[str, Callable[[], Any]]]:
    async def life() -> AsyncIterator[None]:
        yield

    async def hook(conn: Connection) -> None: ...

    return [
        ("direct", lambda: app.direct("late")(handle)),
        ("broadcast", lambda: app.broadcast("late")(handle)),
        ("on_connect", lambda: app.on_connect(hook)),
        ("on_disconnect", lambda: app.on_disconnect(hook)),
        ("lifespan", lambda: app.lifespan(life)),
    ]


async def test_registering_after_start_is_rejected() -> None:
    app = App()
    async with app.running_context():
        assert app.running
        for what, register in _registrations(app):
            with pytest.raises(RegistrationError, match="already started serving") as info:
                register()
            assert what.replace("_", "") in str(info.value).replace("_", "")
    # Still closed after it stopped: the handler table stays frozen.
    for _, register in _registrations(app):
        with pytest.raises(RegistrationError):
            register()
    assert app.handlers == []


async def test_loosely_annotated_hooks_and_handlers_run_with_the_real_values(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Loose forms, registered through the decorators and called by a running app."""
    app = App()
    seen: list[tuple[str, Any]] = []
    ended = trio.Event()

    @app.on_connect
    async def hello(conn: object) -> None:
        seen.append(("connect", conn))

    @app.on_disconnect
    async def bye(conn: Any, reason: object) -> None:
        seen.append(("disconnect", reason))

    @app.on_disconnect
    async def bye_optional(conn: Connection | None, reason: Disconnect | None) -> None:
        seen.append(("disconnect optional", reason))
        ended.set()

    @app.direct("whoami")
    async def whoami(msg: Item, conn: object) -> str:
        assert isinstance(conn, Connection)
        return f"{msg.id}:{conn.id}"

    @app.broadcast("shout", topic="all")
    async def shout(msg: Item, conn: Any) -> int:
        assert isinstance(conn, Connection)
        return msg.id

    async with open_client(app) as client:
        conn = app.connections[0]
        assert await client.request("whoami", {"id": 7}) == f"7:{conn.id}"
        assert await client.request("shout", {"id": 8}) == 8
        await client.close()
    with trio.fail_after(5):
        await ended.wait()
    assert seen[0] == ("connect", conn)
    assert [kind for kind, _ in seen[1:]] == ["disconnect", "disconnect optional"]
    assert all(isinstance(reason, Disconnect) and reason.code == 1000 for _, reason in seen[1:])
