"""What hooks take (``wsroute._signatures``): worked out from their signatures at
registration, each parameter filled with the value its annotation admits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Optional

import pytest

from wsroute import Connection, Disconnect, RegistrationError
from wsroute._hook_registration import VALUES
from wsroute._signatures import Hook

CONN: Any = object()  # a hook only forwards the connection object


async def test_connect_hook_parameters() -> None:
    async def annotated(conn: Connection) -> Any:
        return conn

    async def unannotated(conn):  # type: ignore[no-untyped-def]
        return conn

    async def none() -> str:
        return "none"

    assert await Hook(annotated, "on_connect hook", values=VALUES, disconnect=False)(CONN) is CONN
    assert await Hook(unannotated, "on_connect hook", values=VALUES, disconnect=False)(CONN) is CONN
    assert await Hook(none, "on_connect hook", values=VALUES, disconnect=False)(CONN) == "none"


async def test_disconnect_hook_parameters_in_any_order() -> None:
    reason = Disconnect(1000, "bye", "client")

    async def reversed_(why: Disconnect, conn: Connection) -> Any:
        return conn, why

    async def positional(conn, why):  # type: ignore[no-untyped-def]
        return conn, why

    async def reason_only(*, why: Disconnect) -> Any:
        return why

    def disconnect_hook(fn: Callable[..., Any]) -> Hook:
        return Hook(fn, "on_disconnect hook", values=VALUES, disconnect=True)

    assert await disconnect_hook(reversed_)(CONN, reason) == (CONN, reason)
    assert await disconnect_hook(positional)(CONN, reason) == (CONN, reason)
    assert await disconnect_hook(reason_only)(CONN, reason) is reason


async def disconnect_object(conn: Connection, reason: object) -> Any:
    return conn, reason


async def disconnect_any(conn: Any, reason: Any) -> Any:
    return conn, reason


async def disconnect_optional(conn: object, reason: Disconnect | None) -> Any:
    return conn, reason


async def disconnect_optional_first(reason: Optional[Disconnect], conn) -> Any:  # type: ignore[no-untyped-def]  # noqa: UP045
    return conn, reason


async def disconnect_annotated(
    conn: Annotated[Connection, "x"], reason: Annotated[Disconnect | None, "y"]
) -> Any:
    return conn, reason


@pytest.mark.parametrize(
    "fn",
    [
        disconnect_object,
        disconnect_any,
        disconnect_optional,
        disconnect_optional_first,
        disconnect_annotated,
    ],
    ids=lambda fn: fn.__name__,
)
async def test_disconnect_hook_takes_any_annotation_its_values_satisfy(
    fn: Callable[..., Any],
) -> None:
    reason = Disconnect(1001, "going", "server")
    hook = Hook(fn, "on_disconnect hook", values=VALUES, disconnect=True)
    assert await hook(CONN, reason) == (CONN, reason)


@pytest.mark.parametrize("annotation", [object, Any, Connection | None, "Optional[Connection]"])
async def test_connect_hook_takes_any_annotation_a_connection_satisfies(annotation: Any) -> None:
    async def hook(conn):  # type: ignore[no-untyped-def]
        return conn

    hook.__annotations__ = {"conn": annotation}
    assert await Hook(hook, "on_connect hook", values=VALUES, disconnect=False)(CONN) is CONN


def test_disconnect_hook_parameter_no_value_satisfies_is_rejected() -> None:
    async def wants_int(conn: Connection, reason: int) -> None: ...

    async def wants_str_or_none(conn: Connection, reason: str | None) -> None: ...

    async def three_loose(conn, reason, extra):  # type: ignore[no-untyped-def]
        ...

    for fn, name in ((wants_int, "reason"), (wants_str_or_none, "reason"), (three_loose, "extra")):
        with pytest.raises(RegistrationError) as info:
            Hook(fn, "on_disconnect hook", values=VALUES, disconnect=True)
        assert f"cannot tell what to pass as {name!r}" in str(info.value)
        assert "(conn: Connection, reason: Disconnect)" in str(info.value)


def test_hook_parameter_that_cannot_be_filled_is_rejected() -> None:
    async def wants_int(conn: Connection, count: int) -> None: ...

    async def wants_int_only(count: int) -> None: ...

    async def two_unannotated(conn, reason):  # type: ignore[no-untyped-def]
        ...

    for fn in (wants_int, wants_int_only, two_unannotated):
        with pytest.raises(RegistrationError) as info:
            Hook(fn, "on_connect hook", values=VALUES, disconnect=False)
        assert "cannot tell what to pass" in str(info.value)
        assert "(conn: Connection)" in str(info.value)


def test_disconnect_hook_with_extra_parameter_is_rejected() -> None:
    async def extra(conn: Connection, reason: Disconnect, more: str) -> None: ...

    with pytest.raises(RegistrationError, match=r"\(conn: Connection, reason: Disconnect\)"):
        Hook(extra, "on_disconnect hook", values=VALUES, disconnect=True)


def test_sync_hook_is_rejected() -> None:
    def sync(conn: Connection) -> None: ...

    with pytest.raises(RegistrationError, match="async def sync"):
        Hook(sync, "on_connect hook", values=VALUES, disconnect=False)
