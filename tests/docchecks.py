"""What the docs claim about their blocks, checked by running them (tests/test_docs.py).

A check belongs to the one Python block of its page that contains its anchor text. It
receives a :class:`~tests.doccode.Runner`: ``await run(**names)`` runs the block as a
new module holding ``names``, for fragments that take ``app`` or ``conn_id`` from their
surroundings (each check's docstring says what it provides). Then it exercises what
the page says with ``wsroute.testing.open_client``.
"""

from __future__ import annotations

import ast
import json
import re
import ssl
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trustme

import wsroute.client
from wsroute import App, Connection, Disconnect, Request
from wsroute.testing import CloseInfo, Event, HandshakeRejected, Reply, RequestError, open_client

from .doccode import PAGES, ROOT, Block, Runner


@attrs.frozen
class Check:
    """How to run one block and what to check of it."""

    page: str
    anchor: str  #: text that appears in exactly one Python block of the page
    run: Callable[[Runner], Awaitable[None]]
    real_time: bool


CHECKS: list[Check] = []


def check(
    page: str, anchor: str, *, real_time: bool = False
) -> Callable[[Callable[[Runner], Awaitable[None]]], Callable[[Runner], Awaitable[None]]]:
    """Register what to check of the block of ``page`` that contains ``anchor``."""

    def register(
        fn: Callable[[Runner], Awaitable[None]],
    ) -> Callable[[Runner], Awaitable[None]]:
        CHECKS.append(Check(page, anchor, fn, real_time))
        return fn

    return register


def check_of(block: Block) -> Check | None:
    found = [c for c in CHECKS if c.page == block.page and c.anchor in block.code]
    assert len(found) <= 1, f"{block}: several checks match it"
    return found[0] if found else None


async def just_run(run: Runner) -> None:
    await run()


# -- README.md ---------------------------------------------------------------------------


def readme_claims() -> list[Any]:
    """The request, reply and event the README's prose shows, in that order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    spans = [json.loads(span) for span in re.findall(r"`(\{[^`]*\})`", text)]
    claims = [span for span in spans if span.get("type") == "create_item"]
    assert len(claims) == 3, claims
    return claims


def unordered(frames: list[Any]) -> list[str]:
    return sorted(json.dumps(frame, sort_keys=True) for frame in frames)


@check("README.md", "def create_item(")
async def readme_create_item(run: Runner) -> None:
    """The README's request gets its reply and event, from its app and from the example
    the README serves."""
    request, reply, event = readme_claims()
    for module in (await run(), run.load_example("items")):
        async with open_client(module.app) as sender, open_client(module.app) as other:
            for client in (sender, other):
                await client.expect_event("welcome")
            await sender.send_raw(json.dumps(request))
            frames = [json.loads(await sender.receive_raw()) for _ in range(2)]
            assert unordered(frames) == unordered([reply, event])  # in either order
            assert json.loads(await other.receive_raw()) == event


# -- docs/getting-started.md -------------------------------------------------------------


def without_preamble(text: str) -> str:
    """A module's text without its docstring and ``from __future__`` imports."""
    skip: set[int] = set()
    for node in ast.parse(text).body[:2]:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if docstring or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            assert node.end_lineno is not None
            skip.update(range(node.lineno, node.end_lineno + 1))
    lines = [line for number, line in enumerate(text.splitlines(), 1) if number not in skip]
    return "\n".join(lines).strip()


def text_after(block: Block) -> Block:
    """The page's next block: the output a block prints, say."""
    blocks = PAGES[block.page].blocks
    return blocks[blocks.index(block) + 1]


def wire_session() -> list[tuple[str, Any]]:
    """``(who, frame)`` for each line of the page's "What happens on the wire"."""
    (block,) = [b for b in PAGES["docs/getting-started.md"].blocks if "client →" in b.code]
    entries: list[list[str]] = []
    for line in block.code.splitlines():
        if line.startswith(("client →", "server →")):
            entries.append([line[:6], line[8:]])
        else:
            entries[-1][1] += line
    decoder = json.JSONDecoder()
    return [(who, decoder.raw_decode(text.strip())[0]) for who, text in entries]


def anonymous(frame: Any) -> Any:
    """A frame without the random connection id of the welcome event."""
    if frame.get("type") == "welcome":
        return {**frame, "data": {"connection": "…"}}
    return frame


@check("docs/getting-started.md", 'app = App(default_topic="items")')
async def first_app(run: Runner) -> None:
    """The page's app is examples/items/app.py, and it sends the session the page shows."""
    example = (ROOT / "examples/items/app.py").read_text(encoding="utf-8")
    assert run.block.code.strip() == without_preamble(example)
    app: App = (await run()).app
    async with open_client(app) as client:
        expected: list[Any] = []
        for who, frame in [*wire_session(), ("client", None)]:
            if who == "server":
                expected.append(frame)
                continue
            received = [json.loads(await client.receive_raw()) for _ in expected]
            assert unordered([anonymous(f) for f in received]) == unordered(
                [anonymous(f) for f in expected]
            )
            expected = []
            if frame is not None:
                await client.send_raw(json.dumps(frame))
        await client.expect_no_message()


@check("docs/getting-started.md", "asyncio.run(main())", real_time=True)
async def python_client(run: Runner) -> None:
    """The script prints what the page shows (run twice: the second lists two apples),
    against examples/items served on a free port instead of 8000."""
    app = run.load_example("items").app
    outputs: list[list[str]] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(app.serve, "127.0.0.1", 0)
        for _ in range(2):
            printed: list[str] = []
            url = {"ws://127.0.0.1:8000": f"ws://127.0.0.1:{port}"}
            await run(replace=url, in_thread=True, print=printed.append)
            outputs.append(printed)
        app.shutdown()
    shown = text_after(run.block).code.splitlines()
    first = [anonymous(json.loads(line)) for line in outputs[0]]
    expected = [anonymous(json.loads(line)) for line in shown]
    assert first[0] == expected[0]
    assert unordered(first[1:3]) == unordered(expected[1:3])  # "in either order"
    assert first[3:] == expected[3:]
    assert json.loads(outputs[1][-1])["data"] == [
        {"id": 1, "name": "apple"},
        {"id": 2, "name": "apple"},
    ]


# -- docs/handlers.md --------------------------------------------------------------------


@check("docs/handlers.md", "def structure_uuid(")
async def custom_converter(run: Runner) -> None:
    """UUIDs round-trip; a hook's exception is an invalid_data detail with cattrs' summary."""
    app: App = (await run()).app

    @app.direct("echo")
    async def echo(value: uuid.UUID) -> uuid.UUID:
        return value

    async with open_client(app) as client:
        value = str(uuid.uuid4())
        assert await client.request("echo", value) == value
        with pytest.raises(RequestError) as caught:
            await client.request("echo", 42)
    assert caught.value.code == "invalid_data"
    assert caught.value.details == [
        {"path": "$", "message": "invalid value for type, expected UUID"}
    ]


@check("docs/handlers.md", 'await conn.close(4001, "kicked")')
async def close_from_a_handler(run: Runner) -> None:
    """The client receives "bye", the reply, then the close frame."""
    app: App = (await run()).app
    async with open_client(app) as client:
        await client.expect_event("welcome")  # the hook of the block this one continues
        await client.send("kick", id=1)
        assert await client.receive() == Event("bye", None, None)
        assert await client.receive() == Reply("kick", 1, "done")
        assert await client.wait_closed() == CloseInfo(4001, "kicked")


@check("docs/handlers.md", "async def clock(")
async def lifespan_ticker(run: Runner) -> None:
    """The lifespan's task publishes a tick to "all" every second."""
    app: App = (await run()).app
    async with open_client(app) as client:
        for _ in range(2):
            event = await client.expect_event("tick", topic="all", timeout=1.5)
            assert set(event.data) == {"time"}


@check("docs/handlers.md", "nursery.start(app.serve", real_time=True)
async def serve_and_shut_down(run: Runner) -> None:
    """The app serves on a free port and returns from ``serve`` after ``shutdown()``."""
    module = await run()
    assert module.port > 0 and not module.app.running


@check("docs/handlers.md", "partial(app.serve, ssl_context=context)", real_time=True)
async def serve_tls(run: Runner) -> None:
    """The page's context serves wss:// to wsroute's client, with a certificate for
    127.0.0.1 from a private CA (trustme) in place of the page's files; provides
    ``talk(port)``, run where the page has its ``...``."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    replies: list[Any] = []

    async def talk(port: int) -> None:
        url = f"wss://127.0.0.1:{port}/"
        async with wsroute.client.connect(url, ssl_context=trusting) as client:
            replies.append(await client.request("ping"))

    with tempfile.TemporaryDirectory() as directory:
        chain, key = Path(directory, "chain.pem"), Path(directory, "key.pem")
        chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
        files = {'"fullchain.pem"': repr(str(chain)), '"privkey.pem"': repr(str(key))}
        talking = {"...  # clients connect to wss://127.0.0.1:{port}/": "await talk(port)"}
        module = await run(replace=files | talking, talk=talk)
    assert replies == ["pong"]
    assert not module.app.running


# -- docs/limits.md ----------------------------------------------------------------------


async def refused(app: App, **options: Any) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as caught:
        async with open_client(app, **options):
            pass
    return caught.value


@check("docs/limits.md", "async def authenticate(")
async def accept_hook(run: Runner) -> None:
    """What the hook returns is ``conn.user``; ``Reject`` answers with its status."""
    module = await run()
    sessions: dict[str, Any] = module.SESSIONS
    (ann,) = [cookie for cookie, user in sessions.items() if not user.banned]
    (bob,) = [cookie for cookie, user in sessions.items() if user.banned]
    async with open_client(module.app, headers={"cookie": ann}) as client:
        assert await client.request("whoami") == {"user": "ann", "user_id": "ann"}
    anonymous = await refused(module.app)
    assert (anonymous.status, anonymous.body) == (401, b"log in first")
    banned = await refused(module.app, headers={"cookie": bob})
    assert (banned.status, banned.body, banned.headers.get("x-reason")) == (403, b"banned", "abuse")


@check("docs/limits.md", "bearer_auth(verify)")
async def bearer_token(run: Runner) -> None:
    """The token comes from the header or ``?token=``; none, or an unknown one, is 401."""
    module = await run()
    app: App = module.app
    ((token, user),) = module.TOKENS.items()

    @app.direct("whoami")
    async def whoami(conn: Connection) -> str | None:
        return conn.user_id

    for options in ({"headers": {"Authorization": f"Bearer {token}"}}, {"query": {"token": token}}):
        async with open_client(app, **options) as client:
            assert await client.request("whoami") == user
    for options in ({}, {"query": {"token": "forged"}}):
        rejected = await refused(app, **options)
        assert (rejected.status, rejected.headers.get("www-authenticate")) == (401, "Bearer")


@check("docs/limits.md", "allowed_origins=[")
async def origins(run: Runner) -> None:
    """Listed origins pass (case-insensitive, trailing / ignored), others get 403."""
    app: App = (await run()).app
    for origin in ("https://app.example.com", "HTTPS://Admin.example.com/", None):
        headers = {"Origin": origin} if origin else {}
        async with open_client(app, headers=headers):
            pass
    rejected = await refused(app, headers={"Origin": "https://app.example.com.evil.net"})
    assert (rejected.status, rejected.body) == (403, b"origin not allowed")


# -- docs/addressing.md ------------------------------------------------------------------


def lobby_app(log: list[Any]) -> App:
    """Where docs/addressing.md's fragments run: the user comes from ``?user=``, every
    connection is in room "lobby" under its user's name, disconnections are logged."""
    app = App()

    @app.accept
    async def identify(request: Request) -> str | None:
        return request.query.get("user")

    @app.on_connect
    async def enter(conn: Connection) -> None:
        conn.state.room, conn.state.nick = "lobby", conn.user_id
        await conn.subscribe("room:lobby")

    @app.on_disconnect
    async def gone(conn: Connection, reason: Disconnect) -> None:
        log.append((conn.user_id, reason))

    return app


def anonymous_id(app: App) -> str:
    ids: list[str] = [conn.id for conn in app.connections if conn.user_id is None]
    (conn_id,) = ids
    return conn_id


async def eventually(condition: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.01)


@check("docs/addressing.md", 'app.send_to_user("ann"')
async def pushes(run: Runner) -> None:
    """Provides ``app`` and ``conn_id``: topic events carry the topic, the others not."""
    app = lobby_app([])
    async with open_client(app, query={"user": "ann"}) as ann, open_client(app) as other:
        await run(app=app, conn_id=anonymous_id(app))
        news = Event("news", "room:lobby", {"text": "hello"})
        assert [await ann.receive(), await ann.receive()] == [
            news,
            Event("notice", None, {"unread": 3}),
        ]
        assert [await other.receive(), await other.receive()] == [news, Event("ping", None, None)]


@check("docs/addressing.md", "exclude_sender=True")
async def excluding_the_sender(run: Runner) -> None:
    """Provides ``app`` and ``Connection``: the sender gets the acknowledgement only."""
    app = lobby_app([])
    await run(app=app, Connection=Connection)
    async with (
        open_client(app, query={"user": "ann"}) as ann,
        open_client(app, query={"user": "bob"}) as bob,
    ):
        assert await ann.request("typing") == {"nick": "ann"}
        assert await bob.receive() == Event("typing", "room:lobby", {"nick": "ann"})
        await ann.expect_no_message()


@check("docs/addressing.md", "app.disconnect_user(")
async def disconnecting(run: Runner) -> None:
    """Provides ``app`` and ``conn_id``: both close with their code, hooks see it."""
    log: list[Any] = []
    app = lobby_app(log)
    async with open_client(app, query={"user": "ann"}) as ann, open_client(app) as other:
        await run(app=app, conn_id=anonymous_id(app))
        assert await ann.wait_closed() == CloseInfo(4001, "account suspended")
        assert await other.wait_closed() == CloseInfo(4002, "session expired")
    assert sorted(log, key=repr) == [
        ("ann", Disconnect(4001, "account suspended", "server")),
        (None, Disconnect(4002, "session expired", "server")),
    ]


@check("docs/addressing.md", "await leave_room(conn)")
async def info_handler(run: Runner) -> None:
    """Provides ``app``, ``Connection`` and ``leave_room``: the handler runs in bob's
    connection, which sees only what it sends."""
    left: list[str | None] = []

    async def leave_room(conn: Connection) -> None:
        left.append(conn.user_id)

    app = lobby_app([])
    await run(app=app, Connection=Connection, leave_room=leave_room)
    async with open_client(app, query={"user": "bob"}) as bob:
        await app.tell_user("bob", "kicked", {"by": "mod", "reason": "spam"})
        assert await bob.receive() == Event("kicked", None, {"by": "mod", "reason": "spam"})
        assert await bob.wait_closed() == CloseInfo(4003, "spam")
    assert left == ["bob"]


@check("docs/addressing.md", "app.tell_topic(")
async def telling(run: Runner) -> None:
    """Provides ``app`` and ``conn_id``: each call reaches the info handlers it names."""
    told: list[Any] = []

    def recorder(name: str) -> Callable[[Any, Connection], Awaitable[None]]:
        async def record(data: Any, conn: Connection) -> None:
            told.append((conn.user_id, name, data))

        return record

    app = lobby_app([])
    for name in ("kicked", "refresh", "closing"):
        app.add_info(name, recorder(name))
    async with open_client(app, query={"user": "bob"}), open_client(app):
        await run(app=app, conn_id=anonymous_id(app))
        await eventually(lambda: len(told) == 4)
    assert sorted(told, key=repr) == sorted(
        [
            ("bob", "kicked", {"by": "mod", "reason": "spam"}),
            (None, "refresh", None),
            ("bob", "closing", {"in": 60}),
            (None, "closing", {"in": 60}),
        ],
        key=repr,
    )


# -- docs/brokers.md ---------------------------------------------------------------------


@check("docs/brokers.md", 'RedisBroker("redis://')
async def redis_broker(run: Runner) -> None:
    """Made without connecting; logs show the URL without its password."""
    broker = (await run()).app.broker
    assert broker.prefix == "shop:"
    assert broker.describe() == "redis://cache.internal:6379/0"


# -- docs/clients.md ---------------------------------------------------------------------


@check("docs/clients.md", "trio.run(main)", real_time=True)
async def python_client_quick_start(run: Runner) -> None:
    """The script prints what the page shows, against examples/items served on a free
    port instead of 8000."""
    app = run.load_example("items").app
    printed: list[str] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(app.serve, "127.0.0.1", 0)
        url = {"ws://127.0.0.1:8000/": f"ws://127.0.0.1:{port}/"}
        await run(
            replace=url, in_thread=True, print=lambda *a: printed.append(" ".join(map(str, a)))
        )
        app.shutdown()
    assert printed == text_after(run.block).code.splitlines()


@check("docs/clients.md", "async def watch(", real_time=True)
async def python_client_state_changes(run: Runner) -> None:
    """``watch`` reports the close of a connection the client does not reconnect
    (the app's code 4000) as "closed", and then returns."""
    module = await run()
    app = App()
    printed: list[str] = []
    module.print = lambda *a: printed.append(" ".join(map(str, a)))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(app.serve, "127.0.0.1", 0)
        nursery.start_soon(module.watch, f"ws://127.0.0.1:{port}/")
        with trio.fail_after(10):
            while not app.connections:
                await trio.sleep(0.01)
            await app.connections[0].close(4000, "bye")
            while printed[-1:] != ["closed"]:
                await trio.sleep(0.01)
        app.shutdown()
    assert printed == ["closed"]


@check("docs/clients.md", "async def upload(", real_time=True)
async def python_client_msgpack(run: Runner) -> None:
    """``upload`` prints what the page shows against the block's ``app``, and against
    an app that does not select msgpack, the same but ``None``: JSON, bytes as base64."""
    module = await run()
    json_only = App(subprotocols=["wsroute.v1.json"])
    json_only.direct("store")(module.store)
    printed: list[str] = []
    module.print = lambda *a: printed.append(" ".join(map(str, a)))
    for app in (module.app, json_only):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(app.serve, "127.0.0.1", 0)
            with trio.fail_after(10):
                await module.upload(f"ws://127.0.0.1:{port}/")
            app.shutdown()
    (shown,) = text_after(run.block).code.splitlines()
    assert printed == [shown, shown.replace("wsroute.v1.msgpack", "None")]


# -- docs/http.md ------------------------------------------------------------------------


@check("docs/http.md", '@app.get("/hello")', real_time=True)
async def get_routes(run: Runner) -> None:
    """Both routes answer plain GETs on the app's port, next to the WebSocket."""
    app: App = (await run()).app
    async with trio.open_nursery() as nursery:
        port = await nursery.start(app.serve, "127.0.0.1", 0)
        for path, body in (("/hello", b"hello\n"), ("/whoami", None)):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: docs\r\n\r\n".encode()
                )
                answer = b""
                while chunk := await stream.receive_some():
                    answer += chunk
            head, _, content = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK"), answer
            if body is not None:
                assert content == body
            else:
                assert json.loads(content) == {"path": "/whoami", "agent": "docs"}
                assert b"Content-Type: application/json" in head
        app.shutdown()


@check("docs/clients.md", "async def follow(", real_time=True)
async def python_client_recovery(run: Runner) -> None:
    """``follow`` prints live messages, those published while its connection was down
    once it is back (then ``caught up``), those published between two runs from the
    positions the first saved, and ``reload the lobby: epoch_changed`` against a new
    app whose history starts over."""
    import tempfile
    from pathlib import Path

    printed: list[str] = []
    saved = Path(tempfile.mkdtemp()) / "positions.json"

    async def until(count: int) -> None:
        while len(printed) < count:
            await trio.sleep(0.01)

    async def joined(app: App) -> None:
        while not any("room:lobby" in conn.topics for conn in app.connections):
            await trio.sleep(0.01)

    async def follow_until(module: Any, app: App, url: str, count: int) -> None:
        async with trio.open_nursery() as running:
            running.start_soon(module.follow, url, saved)
            await joined(app)
            await until(count)
            running.cancel_scope.cancel()

    for expected in (
        ["hello", "while down", "caught up: 1 missed", "between", "runs", "caught up: 2 missed"],
        ["reload the lobby: epoch_changed"],
    ):
        module = await run()
        module.print = lambda *a: printed.append(" ".join(map(str, a)))
        app: App = module.app
        start = len(printed)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(app.serve, "127.0.0.1", 0)
            url = f"ws://127.0.0.1:{port}/"
            with trio.fail_after(10):
                if len(expected) > 1:
                    async with trio.open_nursery() as running:
                        running.start_soon(module.follow, url, saved)
                        await joined(app)
                        await app.publish("room:lobby", "msg", "hello")
                        await until(start + 1)
                        await app.connections[0].close(1012)
                        await app.publish("room:lobby", "msg", "while down")
                        await until(start + 3)
                        running.cancel_scope.cancel()
                    await app.publish("room:lobby", "msg", "between")
                    await app.publish("room:lobby", "msg", "runs")
                await follow_until(module, app, url, start + len(expected))
            app.shutdown()
        assert printed[start:] == expected
