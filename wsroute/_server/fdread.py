"""Reading a socket's file descriptor directly (POSIX): the reader's fast path.

``SocketStream.receive_some`` costs several Python layers per call, on the hot path
of every message (see docs/performance.md). ``read_fd`` is the same read with
``os.read`` on the descriptor, trio's ``wait_readable`` for back-pressure and the same
checkpoints, through trio's public API only. ``transport`` chooses it once per
connection where it can.
"""

from __future__ import annotations

import os
from typing import Final

import trio

#: What one read asks of the socket.
READ_SIZE: Final = 65536


async def read_fd(fd: int, drained: bool) -> bytes:
    """``SocketStream.receive_some`` without its layers: a read from the
    non-blocking socket ``fd``, waiting for readability only when there is nothing to
    read. The same checkpoints as trio's. ``drained``: the last read took less than
    it could, so the socket is most likely empty: wait for readability before
    trying (a request-reply client sends nothing until answered, and a read that
    finds nothing costs a system call and an exception).

    Raises:
        trio.ClosedResourceError: the socket was closed (``fd`` is -1, or trio woke
            the wait because another task closed it).
        trio.BrokenResourceError: the connection is broken (reset, ...).
    """
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    if not drained:
        await trio.lowlevel.checkpoint_if_cancelled()
        data = _read_nowait(fd)
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
    while True:
        await trio.lowlevel.wait_readable(fd)
        data = _read_nowait(fd)
        if data is not None:
            return data


def _read_nowait(fd: int) -> bytes | None:
    """Up to READ_SIZE bytes, or ``None`` if none have arrived."""
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket error: {exc}") from exc
