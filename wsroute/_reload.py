"""Watching the app's files for ``wsroute run --reload``, with ``watchfiles``.

``watchfiles`` is optional (``pip install 'wsroute[reload]'``): ``missing()`` says
how to install it before anything starts. Only Python files count (``.py``, ``.pyx``,
``.pyd``), and watchfiles' default filter skips ``__pycache__``, ``.git``, virtual
environments and the like.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

logger = logging.getLogger("wsroute")

#: How long watchfiles' thread waits for a change before looking at the stop
#: event again, in milliseconds: bounds how long stopping the watch takes.
_POLL_MS = 500


def missing() -> str | None:
    """What to do when watchfiles is not installed, or None when it is."""
    try:
        import watchfiles  # noqa: F401
    except ImportError as exc:
        return f"--reload needs the watchfiles package ({exc}): pip install 'wsroute[reload]'"
    return None


async def watch(
    directory: str,
    on_change: Callable[[list[str]], None],
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_change(paths)`` after each batch of changes to Python files under
    ``directory`` (paths relative to it), until ``stop`` is set.

    Set ``stop`` rather than cancelling: watchfiles' thread notices it at once, a
    cancellation only after up to half a second.
    """
    from watchfiles import PythonFilter, awatch

    root = os.path.abspath(directory)
    # watchfiles logs every batch at INFO; the supervisor logs its own line.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    changes = awatch(
        root, watch_filter=PythonFilter(), stop_event=stop, rust_timeout=_POLL_MS, step=50
    )
    task_status.started()
    async for batch in changes:
        on_change(sorted({os.path.relpath(path, root) for _, path in batch}))
