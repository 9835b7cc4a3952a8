"""Who may connect: accept hook, bearer auth, origin, subprotocols, caps, log redaction."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from wsroute import App, Connection, RegistrationError, Reject, Request, bearer_auth
from wsroute._server.admission import redact_query
from wsroute.testing import HandshakeRejected, open_app, open_client


def make_app(**options: Any) -> App:
    app = App(**options)

    @app.direct("me")
    async def me(conn: Connection) -> Any:
        return {"user": conn.user, "subprotocol": conn.subprotocol}

    return app


async def rejected(app: App, **client_options: Any) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as caught:
        async with open_client(app, **client_options):
            pass
    return caught.value


# -- accept hook ----------------------------------------------------------------------


async def test_accept_hook_result_becomes_user(autojump_clock):
    app = make_app()
    seen: list[Any] = []

    @app.accept
    async def accept(request) -> dict[str, str]:
        seen.append((request.path, dict(request.query), request.headers.get("x-user")))
        return {"name": request.headers["x-user"]}

    async with open_client(app, path="/ws", query={"a": "1"}, headers={"X-User": "ann"}) as c:
        assert await c.request("me") == {"user": {"name": "ann"}, "subprotocol": None}
    assert seen == [("/ws", {"a": "1"}, "ann")]


async def test_reject_answers_with_status_body_and_headers(autojump_clock):
    app = make_app()
    connected: list[str] = []

    @app.accept
    async def accept(request) -> None:
        raise Reject(401, "who are you?", {"WWW-Authenticate": "Bearer"})

    @app.on_connect
    async def on_connect(conn: Connection) -> None:
        connected.append(conn.id)

    refusal = await rejected(app)
    assert (refusal.status, refusal.body) == (401, b"who are you?")
    assert refusal.headers["WWW-Authenticate"] == "Bearer"
    assert connected == []


async def test_a_reject_smuggling_a_header_answers_500(autojump_clock, caplog):
    app = make_app()

    @app.accept
    async def accept(request) -> None:
        raise Reject(403, "no", {"X-Reason": "a\r\nSet-Cookie: session=stolen"})

    refusal = await rejected(app)
    assert (refusal.status, refusal.body) == (500, b"internal server error")
    assert "set-cookie" not in {name.lower() for name in refusal.headers}
    assert any("accept hook failed" in r.getMessage() for r in caplog.records)


async def test_crashing_accept_hook_answers_500_and_is_logged(autojump_clock, caplog):
    app = make_app()

    @app.accept
    async def accept(request) -> None:
        raise RuntimeError("database down")

    refusal = await rejected(app, query={"token": "s3cret"})
    assert (refusal.status, refusal.body) == (500, b"internal server error")
    failure = next(r for r in caplog.records if "accept hook failed" in r.getMessage())
    assert failure.exc_info is not None
    assert "s3cret" not in failure.getMessage()


def test_accept_hook_registration_errors():
    app = App()

    with pytest.raises(RegistrationError, match="must be `async def accept"):

        @app.accept
        def sync_accept(request): ...

    @app.accept
    async def first(request): ...

    with pytest.raises(RegistrationError, match="already registered"):

        @app.accept
        async def second(request): ...


def test_an_accept_hook_annotated_for_something_else_is_refused():
    app = App()
    with pytest.raises(RegistrationError, match="takes 'token' annotated str, but it is passed"):

        @app.accept
        async def by_token(token: str) -> str: ...

    @app.accept
    async def checked(request: Request | None) -> None: ...  # a Request satisfies it


# -- bearer auth ------------------------------------------------------------------------


async def check_token(token: str) -> str | None:
    return {"t-ann": "ann", "t-bob": "bob"}.get(token)


@pytest.mark.parametrize(
    ("options", "user"),
    [
        ({"headers": {"Authorization": "Bearer t-ann"}}, "ann"),
        ({"headers": {"authorization": "bearer   t-bob"}}, "bob"),
        ({"query": {"token": "t-bob"}}, "bob"),
    ],
)
async def test_bearer_auth_accepts_header_or_query(options, user, autojump_clock):
    app = make_app()
    app.accept(bearer_auth(check_token))
    async with open_client(app, **options) as client:
        assert (await client.request("me"))["user"] == user


@pytest.mark.parametrize(
    ("options", "body"),
    [
        ({}, b"missing bearer token"),
        ({"headers": {"Authorization": "Basic abc"}}, b"missing bearer token"),
        ({"headers": {"Authorization": "Bearer"}}, b"missing bearer token"),
        ({"query": {"token": ""}}, b"missing bearer token"),
        ({"headers": {"Authorization": "Bearer nope"}}, b"invalid token"),
        ({"query": {"token": "nope"}}, b"invalid token"),
    ],
)
async def test_bearer_auth_refuses_with_401(options, body, autojump_clock):
    app = make_app()
    app.accept(bearer_auth(check_token))
    refusal = await rejected(app, **options)
    assert (refusal.status, refusal.body) == (401, body)
    assert refusal.headers["WWW-Authenticate"] == "Bearer"


async def test_bearer_auth_with_a_sync_verifier_and_no_query_fallback(autojump_clock):
    app = make_app()
    app.accept(bearer_auth(lambda token: token == "ok" and "sync-user", query_param=None))
    async with open_client(app, headers={"Authorization": "Bearer ok"}) as client:
        assert (await client.request("me"))["user"] == "sync-user"
    assert (await rejected(app, query={"token": "ok"})).status == 401


# -- origin -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("HTTPS://APP.EXAMPLE.COM", True),
        ("https://app.example.com/", True),
        ("https://app.example.com.evil.net", False),
        ("https://evil.net/https://app.example.com", False),
        ("http://app.example.com", False),
        ("https://app.example.com:8443", False),
        ("null", False),
        (None, True),  # not a browser: no Origin header, nothing to hijack
    ],
)
async def test_origin_allow_list(origin, allowed, autojump_clock):
    app = make_app(allowed_origins=["https://app.example.com"])
    headers = {"Origin": origin} if origin is not None else {}
    if allowed:
        async with open_client(app, headers=headers) as client:
            await client.request("me")
    else:
        refusal = await rejected(app, headers=headers)
        assert (refusal.status, refusal.body) == (403, b"origin not allowed")


async def test_origin_callable(autojump_clock):
    app = make_app(allowed_origins=lambda origin: origin.endswith(".trusted.test"))
    async with open_client(app, headers={"Origin": "https://a.trusted.test"}) as client:
        await client.request("me")
    assert (await rejected(app, headers={"Origin": "https://a.other.test"})).status == 403


def test_origins_must_be_a_list():
    with pytest.raises(ValueError, match="not one string"):
        App(allowed_origins="https://app.example.com")  # type: ignore[arg-type]


# -- subprotocols --------------------------------------------------------------------------


async def test_server_preference_picks_the_subprotocol(autojump_clock):
    app = make_app(subprotocols=["chat.v2", "chat.v1"])
    async with open_client(app, subprotocols=["chat.v1", "chat.v2"]) as client:
        assert client.subprotocol == "chat.v2"
        assert (await client.request("me"))["subprotocol"] == "chat.v2"
    async with open_client(app, subprotocols=["other"]) as client:
        assert client.subprotocol is None


async def test_required_subprotocol(autojump_clock):
    app = make_app(subprotocols=["chat.v1"], require_subprotocol=True)
    refusal = await rejected(app, subprotocols=["chat.v0"])
    assert refusal.status == 400
    assert b"chat.v1" in refusal.body
    async with open_client(app, subprotocols=["chat.v1"]) as client:
        assert client.subprotocol == "chat.v1"


# -- connection caps -------------------------------------------------------------------------


async def test_global_connection_cap_answers_503(autojump_clock):
    app = make_app(max_connections=2)
    async with open_app(app), open_client(app), open_client(app):
        refusal = await rejected(app)
        assert (refusal.status, refusal.body) == (
            503,
            b"server at connection capacity, retry later",
        )
    # Closed connections free their places.
    async with open_client(app) as client:
        await client.request("me")


async def test_per_ip_cap_answers_429(autojump_clock):
    app = make_app(max_connections_per_ip=1)
    async with open_app(app), open_client(app, remote=("10.0.0.1", 1)):
        assert (await rejected(app, remote=("10.0.0.1", 2))).status == 429
        async with open_client(app, remote=("10.0.0.2", 1)) as other:
            await other.request("me")


async def test_refused_handshakes_do_not_use_up_places(autojump_clock):
    app = make_app(max_connections=1)

    @app.accept
    async def accept(request) -> None:
        if request.query.get("ok") != "1":
            raise Reject(403)

    async with open_app(app):
        for _ in range(3):
            assert (await rejected(app)).status == 403
        async with open_client(app, query={"ok": "1"}) as client:
            await client.request("me")


async def test_the_connect_rate_counts_requests_refused_later(autojump_clock, caplog):
    app = make_app(connect_rate_limit=(1, 10.0))

    @app.accept
    async def accept(request) -> None:
        raise Reject(403, "no")

    me = ("203.0.113.7", 1)
    async with open_app(app):
        assert (await rejected(app, remote=me)).status == 403  # counted all the same
        with caplog.at_level(logging.INFO, logger="wsroute"):
            refusal = await rejected(app, remote=me)
        assert (refusal.status, refusal.headers["Retry-After"]) == (429, "10")
        assert "429 too many connection attempts from this address" in caplog.text
        assert (await rejected(app, remote=("203.0.113.8", 1))).status == 403
    assert app.metrics.value("wsroute_connections_refused_total", status="403") == 2
    assert app.metrics.value("wsroute_connections_refused_total", status="429") == 1


# -- logs -------------------------------------------------------------------------------------


def test_credentials_in_query_strings_are_redacted():
    items = (
        ("room", "1"),
        ("token", "abc"),
        ("access_token", "x"),
        ("AUTH", "y"),
        ("api_key", "z"),
        ("password", "p"),
        ("client_secret", "s"),
    )
    assert redact_query(items) == (
        "room=1&token=[REDACTED]&access_token=[REDACTED]&AUTH=[REDACTED]"
        "&api_key=[REDACTED]&password=[REDACTED]&client_secret=[REDACTED]"
    )


async def test_connect_log_line_redacts_tokens(autojump_clock, caplog):
    caplog.set_level(logging.INFO, logger="wsroute")
    app = make_app()
    async with open_client(app, path="/ws", query={"room": "7", "token": "s3cret"}):
        pass
    lines = [r.getMessage() for r in caplog.records]
    connect = next(line for line in lines if line.startswith("connect "))
    assert "path=/ws?room=7&token=[REDACTED]" in connect
    assert not any("s3cret" in line for line in lines)
