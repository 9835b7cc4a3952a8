"""The pytest plugin (``wsroute.testing.pytest_plugin``): the ``ws_client`` fixture, used
here directly and, through pytest's own ``pytester``, in test files of their own run by
an inner pytest: registered by the ``pytest11`` entry point, one run of the app for all
its clients, clients closed before the app, a failing test failing alone."""

from __future__ import annotations

import pytest

from wsroute import App

from .kitapp import make_app

pytest_plugins = ["pytester"]


@pytest.fixture
def app() -> App:
    return make_app()


async def test_plugin_fixture_opens_clients_for_the_app_fixture(ws_client, app, autojump_clock):
    alice = await ws_client()
    bob = await ws_client()
    await alice.request("create_item", {"name": "via fixture"})
    assert (await bob.expect_event("create_item")).data["name"] == "via fixture"
    other = make_app()
    carol = await ws_client(other)
    assert await carol.request("list_items") == []
    assert app.running and other.running


# -- in test files of their own -------------------------------------------------------

INI = """
[pytest]
trio_mode = true
"""

SHARED = """
import pytest
import trio

from wsroute import App, Connection

LOG = []


@pytest.fixture
def app():
    app = App(ping_interval=None)

    @app.lifespan
    async def life():
        LOG.append("start")
        yield
        LOG.append("stop")

    @app.on_disconnect
    async def gone(conn: Connection):
        LOG.append("disconnect")

    @app.direct("ping")
    async def ping() -> str:
        return "pong"

    return app


async def test_clients_share_one_run_of_the_app(ws_client, app, autojump_clock):
    alice, bob = await ws_client(), await ws_client()
    assert await alice.request("ping") == await bob.request("ping") == "pong"
    assert app.running and LOG == ["start"]


def test_then_the_clients_closed_before_the_app_stopped():
    assert LOG == ["start", "disconnect", "disconnect", "stop"]


async def test_a_failing_assertion_fails_only_its_test(ws_client, autojump_clock):
    client = await ws_client()
    assert await client.request("ping") == "pang"
"""

NO_APP = """
async def test_without_an_app_fixture(ws_client):
    await ws_client()
"""


def test_the_entry_point_registers_the_plugin(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    plugin = config.pluginmanager.get_plugin("wsroute")
    assert plugin is not None and plugin.__name__ == "wsroute.testing.pytest_plugin"


def test_ws_client_in_a_test_file_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_shared=SHARED, test_no_app=NO_APP)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: assert 'pong' == 'pang'*",
            "FAILED test_no_app.py::test_without_an_app_fixture - FixtureLookupError('app'*",
            "FAILED test_shared.py::test_a_failing_assertion_fails_only_its_test - *",
        ]
    )
