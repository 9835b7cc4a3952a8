"""``collapse_exception_group`` (``wsroute._util``): a group of exactly one exception comes
out as that exception, with its own chain; anything else passes through untouched.
``check_task``: what ``start_soon`` could never run is refused at the call."""

from __future__ import annotations

import pytest
import trio

from wsroute._util import check_task, collapse_exception_group


def test_a_group_of_one_is_its_exception() -> None:
    error = KeyError("plain")
    with pytest.raises(KeyError) as info, collapse_exception_group():
        raise ExceptionGroup("one", [error])
    assert info.value is error


def test_nested_groups_of_one_collapse_to_the_leaf() -> None:
    error = ValueError("deep")
    with pytest.raises(ValueError) as info, collapse_exception_group():
        raise ExceptionGroup(
            "outer", [ExceptionGroup("middle", [ExceptionGroup("inner", [error])])]
        )
    assert info.value is error


def test_the_leaf_keeps_its_own_cause_and_context() -> None:
    cause, context = OSError("cause"), LookupError("context")
    error = RuntimeError("leaf")
    error.__cause__, error.__context__ = cause, context
    with pytest.raises(RuntimeError) as info, collapse_exception_group():
        raise ExceptionGroup("one", [error])
    assert info.value.__cause__ is cause
    assert info.value.__context__ is context
    assert info.value.__suppress_context__  # as setting __cause__ made it


def test_a_leaf_without_a_chain_gets_none_from_the_group() -> None:
    error = RuntimeError("leaf")
    with pytest.raises(RuntimeError) as info, collapse_exception_group():
        raise ExceptionGroup("one", [error])
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert not info.value.__suppress_context__


@pytest.mark.parametrize(
    "group",
    [
        ExceptionGroup("two", [KeyError("a"), ValueError("b")]),
        ExceptionGroup("nested two", [ExceptionGroup("inner", [KeyError("a"), KeyError("b")])]),
    ],
    ids=["two", "nested-two"],
)
def test_a_group_of_several_passes_through(group: ExceptionGroup[Exception]) -> None:
    with pytest.raises(ExceptionGroup) as info, collapse_exception_group():
        raise group
    assert info.value is group


def test_a_base_exception_leaf_is_collapsed_too() -> None:
    with pytest.raises(KeyboardInterrupt), collapse_exception_group():
        raise BaseExceptionGroup("one", [KeyboardInterrupt()])


def test_no_group_and_no_exception_pass_through() -> None:
    error = KeyError("plain")
    with pytest.raises(KeyError) as info, collapse_exception_group():
        raise error
    assert info.value is error
    with collapse_exception_group():
        pass


async def test_an_error_in_a_nursery_body_comes_out_as_written() -> None:
    with pytest.raises(AssertionError, match=r"^as written$"), collapse_exception_group():
        async with trio.open_nursery():
            raise AssertionError("as written")


def test_check_task_takes_functions_and_refuses_their_coroutines() -> None:
    async def job(n: int) -> None: ...

    check_task("conn.start_soon", job)  # the function, with its arguments apart
    coroutine = job(1)
    with pytest.raises(TypeError, match=r"write conn\.start_soon\(job, \.\.\.\), not"):
        check_task("conn.start_soon", coroutine)
    assert coroutine.cr_frame is None  # closed, so never reported as never awaited
    with pytest.raises(TypeError, match=r"arguments, not None$"):
        check_task("app.start_soon", None)
