"""wsroute's exceptions (``wsroute._errors``): the tree drawn in the module docstring is
the class hierarchy, and the exceptions that take arguments check them."""

from __future__ import annotations

import errno
import inspect
import re

import pytest

from wsroute import _errors
from wsroute._errors import (
    ClientHandlerError,
    ConnectError,
    Disconnected,
    HandlerError,
    ListenError,
    ProtocolError,
    Reject,
    WsrouteError,
)

# -- the tree --------------------------------------------------------------------------


def drawn_tree() -> dict[str, str | None]:
    """Each class name in the docstring's drawing -> the name it hangs under."""
    doc = _errors.__doc__
    assert doc is not None
    drawing = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in drawing.splitlines():
        found = re.search(r"[A-Z]\w+", line)
        assert found is not None, line
        depth = (found.start() - 4) // 4
        del stack[depth:]
        parents[found[0]] = stack[-1] if stack else None
        stack.append(found[0])
    return parents


def test_the_drawing_has_one_root_and_every_exception_of_the_module() -> None:
    tree = drawn_tree()
    assert [name for name, parent in tree.items() if parent is None] == ["WsrouteError"]
    defined = {
        name
        for name, value in vars(_errors).items()
        if inspect.isclass(value) and issubclass(value, WsrouteError)
    }
    assert set(tree) == defined


def test_each_class_derives_from_the_one_it_is_drawn_under() -> None:
    for name, parent in drawn_tree().items():
        cls = getattr(_errors, name)
        ours = [base.__name__ for base in cls.__bases__ if issubclass(base, WsrouteError)]
        assert ours == ([parent] if parent else []), name


def test_the_builtin_bases_that_let_callers_catch_them_as_usual() -> None:
    others = {
        name: [base for base in getattr(_errors, name).__bases__ if base.__module__ == "builtins"]
        for name in drawn_tree()
    }
    assert {name: bases for name, bases in others.items() if bases != []} == {
        "WsrouteError": [Exception],
        "RegistrationError": [TypeError],
        "SchemaError": [TypeError],
        "NotRunningError": [RuntimeError],
        "AlreadyRunningError": [RuntimeError],
        "ListenError": [OSError],
        "RequestTimeout": [TimeoutError],
    }


# -- HandlerError ------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["", None, 5, b"not_found"])
def test_handler_error_needs_a_non_empty_string_code(code: object) -> None:
    with pytest.raises(TypeError, match=r"^HandlerError code must be a non-empty string$"):
        HandlerError(code)  # type: ignore[arg-type]


def test_handler_error_keeps_what_the_reply_is_made_of() -> None:
    error = HandlerError("not_found", "no item 4", details={"id": 4})
    assert (error.code, error.message, error.details) == ("not_found", "no item 4", {"id": 4})
    assert error.args == ("not_found", "no item 4")
    assert repr(error) == "HandlerError('not_found', 'no item 4', details={'id': 4})"
    bare = HandlerError("busy")
    assert (bare.message, bare.details) == ("", None)


# -- Reject ----------------------------------------------------------------------------------


def test_reject_status_must_be_an_error_status():
    with pytest.raises(ValueError, match="400-599"):
        Reject(200)


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"X-Evil": "a\r\nSet-Cookie: s=1"}, "line break"),
        ({"X-Evil": "a\nb"}, "line break"),
        ({"X-Nul": "a\x00"}, "control character"),
        ({"X-Name": "caf\u00e9 \u2603"}, "beyond Latin-1"),
        ({"X Space": "v"}, "not an HTTP token"),
        ([("", "v")], "not an HTTP token"),
    ],
)
def test_reject_headers_must_be_valid_http(headers, match):
    with pytest.raises(ValueError, match=match):
        Reject(401, "no", headers)
    assert Reject(401, headers={"WWW-Authenticate": 'Bearer realm="a b", x=caf\u00e9'}).headers


@pytest.mark.parametrize("status", [0, 101, 200, 399, 600, 4010, "401", 401.0, None])
def test_reject_status_outside_400_599_is_refused(status: object) -> None:
    message = f"Reject status must be an HTTP error status 400-599, not {status!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Reject(status)  # type: ignore[arg-type]


def test_reject_keeps_status_message_and_headers_from_a_mapping_or_pairs() -> None:
    for status in (400, 599):
        assert Reject(status).status == status
    mapping = Reject(401, "token expired", {"WWW-Authenticate": "Bearer", "Retry-After": 5})  # type: ignore[dict-item]
    assert (mapping.status, mapping.message) == (401, "token expired")
    assert mapping.headers == [("WWW-Authenticate", "Bearer"), ("Retry-After", "5")]
    pairs = Reject(429, headers=[("Retry-After", "1"), ("Retry-After", "2")])
    assert pairs.headers == [("Retry-After", "1"), ("Retry-After", "2")]
    assert Reject(503).headers == []
    assert repr(mapping) == "Reject(401, 'token expired')"


# -- ListenError and the others that carry data ------------------------------------------------


def test_listen_error_names_the_address_and_is_an_os_error() -> None:
    cause = OSError(errno.EADDRINUSE, "Address already in use")
    error = ListenError("127.0.0.1", 8000, cause)
    assert str(error) == "cannot listen on 127.0.0.1:8000: [Errno 98] Address already in use"
    assert (error.host, error.port, error.error, error.errno) == (
        "127.0.0.1",
        8000,
        cause,
        errno.EADDRINUSE,
    )
    assert isinstance(error, OSError) and isinstance(error, WsrouteError)
    ipv6 = ListenError("::1", 80, OSError(errno.EACCES, "Permission denied"))
    assert str(ipv6) == "cannot listen on [::1]:80: [Errno 13] Permission denied"


def test_the_other_errors_keep_what_they_were_given() -> None:
    protocol = ProtocolError("invalid_message", "no type", type="get", id=3, details=[1])
    assert (protocol.code, protocol.message, protocol.type, protocol.id, protocol.details) == (
        "invalid_message",
        "no type",
        "get",
        3,
        [1],
    )
    assert ProtocolError("invalid_json", "bad").type is None
    client = ClientHandlerError("get", "not_found", "no item 4", {"id": 4})
    assert str(client) == "get: not_found: no item 4; details: {'id': 4}"
    assert str(ClientHandlerError("get", "not_found", "no item 4")) == "get: not_found: no item 4"
    assert (client.type, client.code, client.message, client.details) == (
        "get",
        "not_found",
        "no item 4",
        {"id": 4},
    )
    dropped = Disconnected("the connection dropped")
    assert (str(dropped), dropped.code, dropped.reason) == ("the connection dropped", 1006, "")
    refused = ConnectError("refused", 403, b"forbidden")
    assert (refused.status, refused.body) == (403, b"forbidden")
    unreachable = ConnectError("unreachable")
    assert (unreachable.status, unreachable.body) == (None, b"")
