"""The App (``wsroute._app``): registration, options, and running without a listener."""

from __future__ import annotations

import errno
import logging
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
    ListenError,
    NotRunningError,
    RegistrationError,
    SlowConsumerPolicy,
    make_converter,
)
from wsroute._routing import RouteKind
from wsroute.brokers import BrokerMessage, MemoryBroker
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


# -- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrency": 0},
        {"max_concurrency": 1.5},
        {"max_concurrency": True},
        {"max_queued_requests": 0},
        {"outbox_size": -1},
        {"max_message_size": 0},
        {"handshake_timeout": 0},
        {"close_timeout": -1.0},
        {"shutdown_timeout": "10"},
        {"hook_timeout": 0},
        {"slow_consumer": "bogus"},
        {"default_topic": ""},
    ],
    ids=lambda options: "-".join(f"{k}={v!r}" for k, v in options.items()),
)
def test_bad_options_raise_value_error(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        App(**options)


def test_slow_consumer_accepts_a_policy_name() -> None:
    assert App(slow_consumer="drop_oldest").config.slow_consumer is SlowConsumerPolicy.DROP_OLDEST
    assert App().config.slow_consumer is SlowConsumerPolicy.CLOSE


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


# -- not running ---------------------------------------------------------------------


async def test_publish_and_start_soon_need_a_running_app() -> None:
    app = App()

    async def task() -> None: ...

    with pytest.raises(NotRunningError):
        await app.publish("t", "tick")
    with pytest.raises(NotRunningError):
        app.start_soon(task)
    async with app.running_context():
        pass
    with pytest.raises(NotRunningError):
        await app.publish("t", "tick")
    with pytest.raises(NotRunningError):
        app.start_soon(task)


def test_shutdown_when_not_running_is_a_no_op() -> None:
    app = App()
    app.shutdown()
    assert not app.running


# -- running_context -----------------------------------------------------------------


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


async def test_running_context_cannot_be_entered_twice() -> None:
    app = App()
    async with app.running_context():
        with pytest.raises(NotRunningError, match="already running"):
            async with app.running_context():
                pass  # pragma: no cover
        assert app.running
    assert not app.running


async def test_lifespans_run_in_order_and_tear_down_in_reverse() -> None:
    app = App()
    log: list[Any] = []

    @app.lifespan
    async def first() -> AsyncIterator[None]:
        log.append("enter first")
        yield
        log.append("exit first")

    @app.lifespan
    def second(app_arg: App) -> AbstractAsyncContextManager[None]:
        @asynccontextmanager
        async def manager() -> AsyncIterator[None]:
            log.append(("enter second", app_arg is app, app.running))
            yield
            log.append("exit second")

        return manager()

    @app.lifespan
    async def third(app_arg: App) -> AsyncIterator[None]:
        log.append(("enter third", app_arg is app))
        yield
        log.append("exit third")

    async with app.running_context():
        log.append("serving")
    assert log == [
        "enter first",
        ("enter second", True, True),
        ("enter third", True),
        "serving",
        "exit third",
        "exit second",
        "exit first",
    ]
    assert not app.running


async def test_lifespan_exits_even_when_the_body_raises() -> None:
    app = App()
    log: list[str] = []

    @app.lifespan
    async def life() -> AsyncIterator[None]:
        try:
            yield
        finally:
            log.append("exit")

    with pytest.raises(KeyError):
        async with app.running_context():
            raise KeyError("boom")
    assert log == ["exit"]
    assert not app.running


async def test_lifespan_returning_a_non_context_manager_fails_at_start() -> None:
    app = App()

    @app.lifespan
    def bad() -> Any:
        return 42

    with pytest.raises(RegistrationError, match="async context manager, not int"):
        async with app.running_context():
            pass  # pragma: no cover
    assert not app.running


async def test_background_tasks_start_after_startup_and_stop_before_teardown(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = App()
    log: list[str] = []

    async def worker(name: str) -> None:
        log.append(f"{name} started")
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            log.append(f"{name} cancelled")
            raise

    @app.lifespan
    async def first() -> AsyncIterator[None]:
        app.start_soon(worker, "early")
        await trio.sleep(1)  # the task must not start yet
        log.append("first ready")
        yield
        log.append("first teardown")

    @app.lifespan
    async def second() -> AsyncIterator[None]:
        await trio.sleep(1)
        log.append("second ready")
        yield
        log.append("second teardown")

    async with app.running_context():
        await trio.sleep(1)
        log.append("serving")
        app.start_soon(worker, "late")
        await trio.sleep(1)
    assert log[:5] == ["first ready", "second ready", "early started", "serving", "late started"]
    assert sorted(log[5:7]) == ["early cancelled", "late cancelled"]
    assert log[7:] == ["second teardown", "first teardown"]


async def test_failing_background_task_is_logged_and_does_not_crash(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()
    ticks: list[int] = []

    async def boom() -> None:
        await trio.sleep(1)
        raise RuntimeError("kaboom")

    async def ticker() -> None:
        for n in range(5):
            ticks.append(n)
            await trio.sleep(1)

    with caplog.at_level(logging.ERROR, logger="wsroute"):
        async with app.running_context():
            app.start_soon(boom)
            app.start_soon(ticker)
            await trio.sleep(10)
            assert app.running
    assert ticks == [0, 1, 2, 3, 4]
    failures = [
        record
        for record in caplog.records
        if record.name == "wsroute" and record.exc_info and record.levelno == logging.ERROR
    ]
    assert len(failures) == 1
    assert "background task" in failures[0].getMessage()
    exc = failures[0].exc_info
    assert exc is not None
    assert isinstance(exc[1], RuntimeError)
    assert str(exc[1]) == "kaboom"


async def test_publish_reaches_a_subscriber_through_the_broker() -> None:
    broker = MemoryBroker()
    app = App(broker=broker)
    async with app.running_context(), broker.connect() as session:
        await session.subscribe("t")
        await app.publish("t", "tick", {"n": 1})
        with trio.fail_after(1):
            assert await session.__anext__() == BrokerMessage(
                "t", b'{"type":"tick","topic":"t","data":{"n":1}}'
            )


async def test_publish_unstructures_data_with_the_app_converter() -> None:
    broker = MemoryBroker()
    app = App(broker=broker)
    async with app.running_context(), broker.connect() as session:
        await session.subscribe("items")
        await app.publish("items", "new", [Item(1), Item(2)])
        await app.publish("items", "empty")
        with trio.fail_after(1):
            assert await session.__anext__() == BrokerMessage(
                "items", b'{"type":"new","topic":"items","data":[{"id":1},{"id":2}]}'
            )
            assert await session.__anext__() == BrokerMessage(
                "items", b'{"type":"empty","topic":"items","data":null}'
            )


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


async def test_serving_on_a_taken_port_raises_listen_error(nursery: trio.Nursery) -> None:
    with trio.socket.socket() as holder:
        await holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ListenError) as info:
            await nursery.start(App().serve, "127.0.0.1", port)
    error = info.value
    assert (error.host, error.port) == ("127.0.0.1", port)
    assert isinstance(error, OSError) and error.errno == errno.EADDRINUSE
    assert isinstance(error.error, OSError)
    assert str(error).startswith(f"cannot listen on 127.0.0.1:{port}: [Errno ")
