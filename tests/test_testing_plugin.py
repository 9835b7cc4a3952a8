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

UNCALLED = """
import pytest

from wsroute import App


def make_app():
    return App()


@pytest.fixture
def app():
    return make_app


async def test_with_a_factory_for_an_app(ws_client):
    await ws_client()
"""


def test_the_entry_point_registers_the_plugin(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    plugin = config.pluginmanager.get_plugin("wsroute")
    assert plugin is not None and plugin.__name__ == "wsroute.testing.pytest_plugin"


def test_ws_client_in_a_test_file_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_shared=SHARED, test_no_app=NO_APP, test_uncalled=UNCALLED)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=3)
    # A missing or wrong app fixture says how to write it, not what broke deep inside
    # (it was FixtureLookupError('app', ...) and "'function' object has no attribute").
    result.stdout.fnmatch_lines(
        [
            "*TypeError: ws_client() opens a client on the test's `app` fixture, and there is"
            " none: define one returning your App (@pytest.fixture, def app(): return"
            " make_app()), or pass the app: await ws_client(my_app)",
            "*AssertionError: assert 'pong' == 'pang'*",
            "*TypeError: the app fixture returned make_app, not a wsroute.App: if it builds"
            " the app, call it (make_app())",
            "FAILED test_no_app.py::test_without_an_app_fixture - TypeError*",
            "FAILED test_shared.py::test_a_failing_assertion_fails_only_its_test - *",
            "FAILED test_uncalled.py::test_with_a_factory_for_an_app - TypeError*",
        ]
    )
