"""The ``wsroute.v1.msgpack`` subprotocol (wsroute/_msgpack.py): the codec fed bytes,
then real sockets driven by an independent client (the ``websockets`` library and the
``msgpack`` package), and the test kit for what only counting can show (a broadcast
encoded once per format)."""

from __future__ import annotations

import base64
from contextlib import AsyncExitStack
from typing import Any

import attrs
import msgpack
import orjson
import pytest
import trio

from wsroute import App, Connection, ProtocolError
from wsroute._msgpack import JSON_SUBPROTOCOL, SUBPROTOCOL, decode
from wsroute._protocol import INVALID_MESSAGE, INVALID_MSGPACK, ClientMessage
from wsroute._protocol import decode as decode_json
from wsroute.testing import Event, open_client

from .servers import assert_nothing_pending, items_app
from .wsclient import WSClient, connect


def code_of(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return info.value.code


# -- the codec -------------------------------------------------------------------------


def test_a_map_decodes_to_the_same_message_as_its_json() -> None:
    message = {"type": "get", "id": 7, "data": {"item_id": 1, "tags": ["a"], "x": None}}
    assert decode(msgpack.packb(message)) == decode_json(orjson.dumps(message))
    assert decode(msgpack.packb({"type": "ping"})) == ClientMessage("ping", None, None)


def test_binary_values_are_bytes() -> None:
    decoded = decode(msgpack.packb({"type": "put", "data": {"blob": b"\x00\xff", "n": [b""]}}))
    assert decoded.data == {"blob": b"\x00\xff", "n": [b""]}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used byte"),
        pytest.param(msgpack.packb({"type": "a"})[:-1], id="truncated"),
        pytest.param(msgpack.packb({"type": "a"}) + b"\x00", id="two values"),
        pytest.param(msgpack.packb({"type": "a", "data": msgpack.ExtType(5, b"x")}), id="ext"),
        pytest.param(msgpack.packb({"type": "a", "data": msgpack.Timestamp(1, 0)}), id="timestamp"),
        pytest.param(msgpack.packb({1: "a"}), id="int key"),
        pytest.param(msgpack.packb({"type": "a", "data": {b"k": 1}}), id="bytes key"),
        pytest.param(msgpack.packb({"type": "a", "data": [{"x": {(1, 2): 0}}]}), id="array key"),
        pytest.param(b"\x91" * 100_000 + b"\xc0", id="nested 100000 deep"),
        pytest.param(b"\xdf\xff\xff\xff\xff", id="a map announcing 2**32-1 pairs"),
        pytest.param(b"\xc6\xff\xff\xff\xff", id="a bin announcing 4 GiB"),
    ],
)
def test_what_is_not_protocol_msgpack_is_invalid_msgpack(data: bytes) -> None:
    assert code_of(data) == INVALID_MSGPACK


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"\xc1", "a byte that msgpack never uses (0xc1)", id="never-used byte"),
        pytest.param(b"\x91" * 2000 + b"\xc0", "nested deeper than 1024 levels", id="deep"),
        pytest.param(b"\x92\x01", "Unpack failed: incomplete input", id="truncated"),
    ],
)
def test_an_invalid_msgpack_reply_says_what_is_wrong(data: bytes, reason: str) -> None:
    """msgpack raises FormatError and StackError without a message; the reply said
    only "frame is not valid msgpack: "."""
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.message == f"frame is not valid msgpack: {reason}"


@pytest.mark.parametrize(
    "message",
    [
        ["ping"],
        "ping",
        {"id": 1},
        {"type": ""},
        {"type": 5},
        {"type": "a", "id": 1.5},
        {"type": "a", "id": True},
        {"type": "a", "id": 2**60},
        {"type": "a", "extra": 1},
    ],
)
def test_envelope_errors_have_the_codes_of_json(message: Any) -> None:
    with pytest.raises(ProtocolError) as json_error:
        decode_json(orjson.dumps(message))
    assert code_of(msgpack.packb(message)) == json_error.value.code


def test_nesting_is_bounded_at_1024_levels_as_in_json() -> None:
    """The envelope is the first level; ``data`` holds 1023 more, or 1024."""

    def nested(levels: int) -> bytes:
        return b"\x82\xa4type\xa1a\xa4data" + b"\x91" * levels + b"\xc0"

    assert decode(nested(1023)).type == "a"
    assert code_of(nested(1024)) == INVALID_MSGPACK
    json_deep = b'{"type":"a","data":' + b"[" * 1024 + b"]" * 1024 + b"}"
    with pytest.raises(ProtocolError):
        decode_json(json_deep)
    decode_json(json_deep.replace(b"[]", b"", 1))


def test_a_frame_that_is_not_a_map_says_so() -> None:
    with pytest.raises(ProtocolError, match="must be a msgpack map") as info:
        decode(msgpack.packb([1, 2]))
    assert info.value.code == INVALID_MESSAGE


# -- over real sockets -----------------------------------------------------------------


@attrs.frozen
class Shout:
    n: int
    raw: bytes = b""


def blob_app(**options: Any) -> App:
    app = items_app(**options)

    @app.direct("subprotocol")
    async def subprotocol(conn: Connection) -> str | None:
        return conn.subprotocol

    @app.direct("reverse")
    async def reverse(blob: bytes) -> bytes:
        return blob[::-1]

    @app.direct("ratio")
    async def ratio(value: float) -> float:
        return value / 2

    @app.broadcast("shout")
    async def shout(data: Shout) -> Shout:
        return data

    @app.broadcast("note")
    async def note(data: dict[str, int]) -> dict[str, int]:
        return data

    return app


async def serve(nursery: trio.Nursery, app: App) -> int:
    port: int = await nursery.start(app.serve, "127.0.0.1", 0)
    return port


def msgpack_client(port: int, **kwargs: Any) -> Any:
    return connect(port, subprotocols=[SUBPROTOCOL], **kwargs)


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        ([SUBPROTOCOL], SUBPROTOCOL),
        ([JSON_SUBPROTOCOL], JSON_SUBPROTOCOL),
        (["chat.v9", SUBPROTOCOL, JSON_SUBPROTOCOL], JSON_SUBPROTOCOL),  # the app's order
        (None, None),
    ],
)
async def test_every_app_speaks_both_by_default(
    nursery: trio.Nursery, offered: list[str] | None, selected: str | None
) -> None:
    port = await serve(nursery, blob_app())
    async with connect(port, subprotocols=offered) as client:
        assert client.conn.subprotocol == selected
        assert client.msgpack is (selected == SUBPROTOCOL)
        assert (await client.request("subprotocol"))["data"] == selected


async def test_an_app_without_msgpack_answers_in_json(nursery: trio.Nursery) -> None:
    port = await serve(nursery, blob_app(subprotocols=[]))
    async with msgpack_client(port) as client:
        assert client.conn.subprotocol is None
        assert (await client.request("ping"))["data"] == "pong"


async def test_a_request_and_its_reply_are_msgpack_in_binary_frames(
    nursery: trio.Nursery,
) -> None:
    port = await serve(nursery, blob_app())
    async with msgpack_client(port) as client:
        await client.send(msgpack.packb({"type": "get", "id": 9, "data": 1}))
        frame = await client.recv_raw()
        assert isinstance(frame, bytes)
        assert msgpack.unpackb(frame) == {
            "type": "get",
            "id": 9,
            "ok": True,
            "data": {"id": 1, "name": "apple"},
        }
        await assert_nothing_pending(client)


BAD_REQUESTS = [
    ("get", "1"),  # invalid_data
    ("get", 2),  # the handler's not_found, with details
    ("get", None),  # invalid_data: missing
    ("get", {"item_id": 1}),  # invalid_data, with a path
    ("nope", None),  # unknown_type
    ("crash", None),  # internal_error
    ("ratio", "x"),
]


async def test_errors_are_those_of_json(nursery: trio.Nursery) -> None:
    """The same requests get the same answers, whatever the format."""
    port = await serve(nursery, blob_app())
    async with connect(port) as as_json, msgpack_client(port) as as_msgpack:
        for n, (type, data) in enumerate(BAD_REQUESTS):
            answers = [await c.request(type, data, id=n) for c in (as_json, as_msgpack)]
            assert answers[0]["ok"] is False
            assert answers[0] == answers[1]


async def test_bytes_are_binary_in_msgpack_and_base64_in_json(nursery: trio.Nursery) -> None:
    port = await serve(nursery, blob_app())
    async with msgpack_client(port) as as_msgpack, connect(port) as as_json:
        reply = await as_msgpack.request("reverse", b"\x00\x01\xff")
        assert reply["data"] == b"\xff\x01\x00"
        text = base64.b64encode(b"\x00\x01\xff").decode()
        reply = await as_json.request("reverse", text)
        assert base64.b64decode(reply["data"]) == b"\xff\x01\x00"
        # Binary in JSON's place is refused like any wrong type.
        wrong = await as_msgpack.request("reverse", [0, 1])
        assert wrong["error"]["code"] == "invalid_data"


async def test_a_float_must_be_finite(nursery: trio.Nursery) -> None:
    """msgpack can say NaN and infinity, which JSON cannot; a float field refuses them."""
    port = await serve(nursery, blob_app())
    async with msgpack_client(port) as client:
        assert (await client.request("ratio", 3.0))["data"] == 1.5
        for value in (float("nan"), float("-inf")):
            reply = await client.request("ratio", value)
            assert reply["error"]["code"] == "invalid_data"


async def test_a_frame_that_is_not_msgpack_gets_invalid_msgpack(nursery: trio.Nursery) -> None:
    port = await serve(nursery, blob_app())
    async with msgpack_client(port) as client:
        await client.send(b"\xc1\x00")
        error = await client.recv()
        assert error["ok"] is False
        assert error["error"]["code"] == "invalid_msgpack"
        await assert_nothing_pending(client)  # the connection lives on


async def test_a_text_frame_under_msgpack_closes_1003(nursery: trio.Nursery) -> None:
    port = await serve(nursery, blob_app())
    async with msgpack_client(port) as client:
        await client.send('{"type": "ping"}')
        assert await client.wait_closed() == (1003, "text frames are not supported with msgpack")
    async with connect(port, subprotocols=[JSON_SUBPROTOCOL]) as client:
        await client.send(msgpack.packb({"type": "ping"}))
        assert await client.wait_closed() == (1003, "binary frames are not supported")


async def test_a_broadcast_reaches_each_client_in_its_format(nursery: trio.Nursery) -> None:
    app = blob_app(compression="deflate")
    port = await serve(nursery, app)
    event = {"type": "shout", "topic": "all", "data": {"raw": b"\x07" * 2000, "n": 1}}
    as_text = {**event, "data": {"raw": base64.b64encode(b"\x07" * 2000).decode(), "n": 1}}
    async with (
        msgpack_client(port) as as_msgpack,
        msgpack_client(port, compression="deflate") as compressed,
        connect(port) as as_json,
        connect(port, compression="deflate") as compressed_json,
    ):
        clients: list[WSClient] = [as_msgpack, compressed, as_json, compressed_json]
        await as_json.send(
            {"type": "shout", "data": event["data"] | {"raw": as_text["data"]["raw"]}}
        )
        for client in clients:
            assert await client.recv() == (event if client.msgpack else as_text)
        await as_msgpack.send({"type": "shout", "data": event["data"]})
        for client in clients:
            assert await client.recv() == (event if client.msgpack else as_text)


# -- encoded once per format -----------------------------------------------------------


async def test_a_broadcast_is_encoded_once_for_every_msgpack_subscriber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packed: list[Any] = []
    real = msgpack.packb

    def counting(value: Any) -> bytes:
        packed.append(value)
        data: bytes = real(value)
        return data

    app = blob_app()
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(open_client(app, msgpack=n < 3)) for n in range(5)
        ]
        assert [c.subprotocol for c in clients] == [SUBPROTOCOL] * 3 + [None] * 2
        monkeypatch.setattr("wsroute._protocol.msgpack.packb", counting)
        await clients[-1].send("note", {"n": 1})
        for client in clients:
            assert await client.receive() == Event("note", "all", {"n": 1})
        assert packed == [{"type": "note", "topic": "all", "data": {"n": 1}}]
        # With bytes, the event crosses the broker in msgpack too: twice in all.
        packed.clear()
        await clients[-1].send("shout", {"n": 2, "raw": "AA=="})
        for client in clients:
            expected = b"\x00" if client.subprotocol else "AA=="
            assert await client.receive() == Event("shout", "all", {"n": 2, "raw": expected})
        assert len(packed) == 2
        monkeypatch.undo()


async def test_the_test_kit_speaks_msgpack() -> None:
    app = blob_app()
    async with open_client(app, msgpack=True) as client:
        assert client.subprotocol == SUBPROTOCOL
        assert await client.request("reverse", b"ab") == b"ba"
        await client.send_raw(b"\xc1")
        error = await client.receive()
        assert error.code == "invalid_msgpack"  # type: ignore[union-attr]
    async with open_client(app) as client:  # JSON: bytes go as base64
        assert await client.request("reverse", b"ab") == "YmE="
