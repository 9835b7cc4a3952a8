"""Small helpers shared by the runtime and the test kit."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@contextmanager
def collapse_exception_group() -> Iterator[None]:
    """Re-raise a group holding exactly one exception as that exception.

    A trio nursery wraps whatever escapes its body in an ExceptionGroup. Context
    managers that yield inside a nursery use this so that an ``assert`` or a
    ``HandlerError`` in the caller's ``async with`` block comes out unwrapped, as the
    caller wrote it. Groups of several exceptions pass through untouched.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        cause, context, suppress = leaf.__cause__, leaf.__context__, leaf.__suppress_context__
        try:
            raise leaf  # the group is noise; the leaf keeps its own chain
        finally:
            leaf.__cause__, leaf.__context__ = cause, context
            leaf.__suppress_context__ = suppress


def check_task(caller: str, fn: Any) -> None:
    """Refuse at the call what ``caller`` (``"conn.start_soon"``) could never run.

    Its task calls ``fn`` later, under a guard that logs what it raises, so a mistake
    would surface there instead, far from its cause (and, for a connection's task,
    close the connection). The likely one is the asyncio habit of passing the
    coroutine, ``start_soon(fn(arg))``, which trio's own ``start_soon`` also refuses.
    """
    if inspect.iscoroutine(fn):
        fn.close()  # never awaited now: spare the "was never awaited" warning
        raise TypeError(
            f"{caller} takes an async function and its arguments: write"
            f" {caller}({fn.__name__}, ...), not {caller}({fn.__name__}(...))"
        )
    if not callable(fn):
        raise TypeError(f"{caller} takes an async function and its arguments, not {fn!r:.80}")
