"""What the test client receives (``wsroute.testing._messages``): ``parse_message``
turns each server frame into a Reply, ErrorReply or Event, and refuses what breaks
protocol v1 with an AssertionError; the errors the kit raises say what happened."""

from __future__ import annotations

import pytest

from wsroute._request import Headers
from wsroute.testing import (
    ClientClosed,
    CloseInfo,
    ErrorReply,
    Event,
    ExpectationFailed,
    HandshakeRejected,
    Reply,
    RequestError,
)
from wsroute.testing._messages import parse_message


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"type":"get","id":7,"ok":true,"data":{"id":1}}', Reply("get", 7, {"id": 1})),
        ('{"type":"get","ok":true,"data":null}', Reply("get", None, None)),
        ('{"type":"get","id":"a","ok":true}', Reply("get", "a", None)),
        (
            '{"type":"get","id":3,"ok":false,"error":{"code":"not_found","message":"no"}}',
            ErrorReply("get", 3, "not_found", "no"),
        ),
        (
            '{"type":"error","ok":false,"error":{"code":"invalid_json","message":"m",'
            '"details":[{"path":"$","message":"x"}]}}',
            ErrorReply("error", None, "invalid_json", "m", [{"path": "$", "message": "x"}]),
        ),
        ('{"type":"tick","topic":"all","data":{"n":1}}', Event("tick", "all", {"n": 1})),
        ('{"type":"pushed","data":[1,2]}', Event("pushed", None, [1, 2])),
        ('{"type":"bare"}', Event("bare", None, None)),
    ],
)
def test_each_frame_shape_is_decoded(frame: str, message: object) -> None:
    assert parse_message(frame) == message


@pytest.mark.parametrize(
    ("frame", "complaint"),
    [
        (b'{"type":"get"}', "server sent a binary frame"),
        ("[1, 2]", "not a protocol v1 object"),
        ('{"data": 1}', "not a protocol v1 object"),
        ('{"type": 5}', "not a protocol v1 object"),
        ('{"type":"tick","topic":"all","data":1,"extra":2}', "malformed event"),
        ('{"type":"get","id":1,"ok":true,"data":1,"error":{}}', "malformed reply"),
        ('{"type":"get","id":1,"ok":false}', "malformed error reply"),
        ('{"type":"get","id":1,"ok":false,"error":"nope"}', "malformed error reply"),
    ],
)
def test_frames_that_break_protocol_v1_are_assertion_errors(
    frame: str | bytes, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        parse_message(frame)


@pytest.mark.parametrize(
    "frame",
    ["not json", '{"type":"get","id":1,"ok":false,"error":{"message":"no code"}}'],
    ids=["invalid-json", "error-without-code"],
)
def test_unreadable_frames_are_assertion_errors_too(frame: str) -> None:
    with pytest.raises(AssertionError):
        parse_message(frame)


def test_the_kits_errors_say_what_happened() -> None:
    reply = ErrorReply("get", 1, "not_found", "no item 4", {"id": 4})
    error = RequestError(reply)
    assert str(error) == "not_found: no item 4; details: {'id': 4}"
    assert str(RequestError(ErrorReply("get", 1, "not_found", "no item 4"))) == (
        "not_found: no item 4"
    )
    assert (error.reply, error.code, error.message, error.details) == (
        reply,
        "not_found",
        "no item 4",
        {"id": 4},
    )
    rejected = HandshakeRejected(401, b"token expired", Headers([("WWW-Authenticate", "Bearer")]))
    assert str(rejected) == "handshake rejected with HTTP 401: b'token expired'"
    assert rejected.headers["www-authenticate"] == "Bearer"
    closed = ClientClosed(CloseInfo(4001, "kicked"))
    assert str(closed) == "connection closed: CloseInfo(code=4001, reason='kicked')"


def test_a_failed_expectation_lists_what_arrived_and_the_close() -> None:
    received = [Event("tick", "all", 1), Reply("get", 2, None)]
    failed = ExpectationFailed("event 'tock'", received, CloseInfo(1001, "bye"), waited=1.5)
    assert str(failed).splitlines() == [
        "expected event 'tock' within 1.5 s",
        "received instead (2):",
        "  Event(type='tick', topic='all', data=1)",
        "  Reply(type='get', id=2, data=None)",
        "the server closed the connection: 1001 'bye'",
    ]
    assert isinstance(failed, AssertionError)
    quiet = ExpectationFailed("a frame", [], None)
    assert str(quiet).splitlines() == ["expected a frame", "received nothing"]
