"""The TCP accept loop (wsroute/_server/listener.py).

A real listener for the common case. The errors ``accept`` can raise cannot be had
on demand from a real socket, so a scripted socket stands in for those.
"""

from __future__ import annotations

import errno
import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from wsroute._server.listener import accept_loop


async def test_each_connection_is_served_with_its_peer_address() -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    served: list[tuple[trio.SocketStream, tuple[str, int]]] = []
    arrived = trio.Event()

    async def serve(stream: trio.SocketStream, peer: tuple[str, int]) -> None:
        served.append((stream, peer))
        arrived.set()
        await stream.send_all(b"hi")
        stream.socket.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_loop, listener, nursery, serve)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        address = client.socket.getsockname()[:2]
        with trio.fail_after(5):
            await arrived.wait()
            assert await client.receive_some(10) == b"hi"
        nursery.cancel_scope.cancel()
    await client.aclose()
    await listener.aclose()
    [(stream, peer)] = served
    assert isinstance(stream, trio.SocketStream)
    assert peer == address


class ScriptedSocket:
    """``accept`` raises the scripted errors, then returns a real socket once."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.pair = trio.socket.socketpair()

    async def accept(self) -> tuple[Any, tuple[str, int]]:
        await trio.lowlevel.checkpoint()
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, "scripted")
        if self.pair is None:
            await trio.sleep_forever()
        connection, self.pair = self.pair[0], None
        return connection, ("10.0.0.1", 4321)


async def run_script(sock: ScriptedSocket) -> list[tuple[str, int]]:
    served: list[tuple[str, int]] = []

    async def serve(stream: trio.SocketStream, peer: tuple[str, int]) -> None:
        served.append(peer)
        stream.socket.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_loop, SimpleNamespace(socket=sock), nursery, serve)
        with trio.fail_after(5):
            while not served:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    return served


async def test_a_connection_gone_before_accept_is_skipped(autojump_clock: Any) -> None:
    sock = ScriptedSocket(errno.ECONNABORTED, errno.ECONNRESET, errno.EPERM)
    assert await run_script(sock) == [("10.0.0.1", 4321)]


async def test_out_of_file_descriptors_is_logged_and_retried(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sock = ScriptedSocket(errno.EMFILE, errno.ENOBUFS)
    start = trio.current_time()
    assert await run_script(sock) == [("10.0.0.1", 4321)]
    assert trio.current_time() - start >= 0.2  # 100 ms after each
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "EMFILE" in errors[0] and "retrying" in errors[0]


@pytest.mark.parametrize(
    ("code", "raised"), [(errno.EBADF, trio.ClosedResourceError), (errno.EINVAL, OSError)]
)
async def test_other_errors_end_the_loop(code: int, raised: type[Exception]) -> None:
    async def serve(stream: trio.SocketStream, peer: tuple[str, int]) -> None:
        raise AssertionError("nothing to serve")

    async with trio.open_nursery() as nursery:
        with pytest.raises(raised):
            await accept_loop(SimpleNamespace(socket=ScriptedSocket(code)), nursery, serve)  # type: ignore[arg-type]
