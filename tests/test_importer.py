"""The CLI's loader (``wsroute._importer``): ``load_app`` called directly, on modules
written to a temporary directory, for every ``LoadError`` it names and for what it lets
through. tests/test_cli.py runs the same cases through ``wsroute`` end to end."""

from __future__ import annotations

import os
import sys
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsroute import App, LoadError
from wsroute._importer import load_app, load_overrides, user_frames

MODULES = {
    "mod.py": """
    import json
    from types import SimpleNamespace
    from wsroute import App

    app = App()
    number = 3
    holder = SimpleNamespace(app=app)

    def factory():
        return App()
    """,
    "noapps.py": """
    value = None
    """,
    "schemas.py": """
    import uuid

    overrides = {uuid.UUID: {"type": "string", "format": "uuid"}}
    listed = [(uuid.UUID, {"type": "string"})]
    loose = {uuid.UUID: "string"}
    """,
    "pkg/__init__.py": "",
    "pkg/server.py": """
    from wsroute import App

    app = App()
    """,
    "broken.py": """
    import json
    import missing_dependency_xyz
    """,
    "badname.py": """
    from json import no_such_name
    """,
    "boom.py": """
    x = 1
    raise RuntimeError("boom from the module")
    """,
}


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The modules above in the current directory; sys.path and sys.modules restored."""
    for name, text in MODULES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def load_error(spec: str, app_dir: str | None = None) -> str:
    with pytest.raises(LoadError) as info:
        load_app(spec, app_dir)
    error = info.value
    # One line: no chain of exceptions is shown under it.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return str(error)


FORMAT = "expected MODULE:ATTR, such as 'app:app' or 'myproject.server:app'"


@pytest.mark.parametrize("spec", ["mod", "mod:", ":app", "mod:app:x", "mod:1app", "m..x:app"])
def test_a_malformed_spec_shows_the_format(app_dir: Path, spec: str) -> None:
    assert load_error(spec) == f"{spec!r} is not a valid app spec: {FORMAT}"


@pytest.mark.parametrize(
    ("spec", "fix"),
    [
        ("mod.py:app", "use 'mod:app'"),
        ("mod.py", "use 'mod:app'"),
        ("src/mod.py:api", "use 'mod:api' and --app-dir src"),
        ("src\\mod:app", "use 'mod:app' and --app-dir src"),
    ],
)
def test_a_file_path_is_answered_with_the_module_spec(app_dir: Path, spec: str, fix: str) -> None:
    assert load_error(spec) == f"{spec!r}: MODULE is a module name, not a file path: {fix}"


@pytest.mark.parametrize(
    ("spec", "missing"),
    [("nosuch:app", "nosuch"), ("pkg.nosuch:app", "pkg.nosuch"), ("nopkg.mod:app", "nopkg")],
)
def test_a_module_not_on_the_path_names_the_app_dir(app_dir: Path, spec: str, missing: str) -> None:
    assert load_error(spec) == (
        f"no module named {missing!r} on sys.path (app dir {app_dir}): check the module"
        " name, or pass --app-dir DIR with the directory that contains it"
    )


def test_a_module_whose_own_import_fails_is_told_apart(app_dir: Path) -> None:
    assert load_error("broken:app") == (
        f"module 'broken' was found, but importing it failed at {app_dir / 'broken.py'}:2:"
        " No module named 'missing_dependency_xyz'; is a dependency missing?"
    )
    message = load_error("badname:app")
    assert message.startswith(
        f"module 'badname' was found, but importing it failed at {app_dir / 'badname.py'}:1:"
        " cannot import name 'no_such_name' from 'json'"
    )
    assert "dependency" not in message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mod:nope", "'mod' has no attribute 'nope' (in {mod})"),
        ("mod:holder.nope", "'holder' has no attribute 'nope' (in {mod})"),
        ("mod:number", "'mod:number' is an int, not a wsroute.App"),
        ("mod:json", "'mod:json' is a module, not a wsroute.App"),
        (
            "mod:SimpleNamespace",
            "'mod:SimpleNamespace' is the class SimpleNamespace, not a wsroute.App",
        ),
        (
            "mod:factory",
            "'mod:factory' is the function factory, not a wsroute.App; if it builds the app,"
            " call it at module level (app = create_app())",
        ),
    ],
)
def test_a_wrong_attribute_points_at_the_modules_apps(
    app_dir: Path, spec: str, message: str
) -> None:
    hint = "; the module's App: 'mod:app'"
    assert load_error(spec) == message.format(mod=app_dir / "mod.py") + hint


def test_without_an_app_in_the_module_there_is_no_hint(app_dir: Path) -> None:
    assert load_error("noapps:value") == "'noapps:value' is a NoneType, not a wsroute.App"
    assert (
        load_error("noapps:app") == f"'noapps' has no attribute 'app' (in {app_dir / 'noapps.py'})"
    )


def test_an_app_dir_that_is_not_a_directory(app_dir: Path) -> None:
    missing = str(app_dir / "missing")
    assert load_error("mod:app", missing) == (
        f"app dir {missing!r} is not a directory (--app-dir / WSROUTE_APP_DIR)"
    )


def test_apps_are_found_by_module_package_and_dotted_attribute(app_dir: Path) -> None:
    app = load_app("mod:app")
    assert isinstance(app, App)
    assert load_app("mod:holder.app") is app
    assert isinstance(load_app("pkg.server:app"), App)
    assert sys.path[0] == str(app_dir) and sys.path.count(str(app_dir)) == 1


def test_the_app_dir_is_searched_first(
    app_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    os.chdir(elsewhere)  # the fixture's monkeypatch restores the directory
    app = load_app("pkg.server:app", str(app_dir))
    assert isinstance(app, App)
    assert sys.modules["pkg.server"].__file__ == str(app_dir / "pkg" / "server.py")


def test_other_errors_of_the_module_propagate_with_the_users_traceback(app_dir: Path) -> None:
    with pytest.raises(RuntimeError, match=r"^boom from the module$") as info:
        load_app("boom:app")
    frames = traceback.extract_tb(user_frames(info.value))
    assert (frames[0].filename, frames[0].lineno) == (str(app_dir / "boom.py"), 2)
    assert len(frames) == 1


def test_overrides_are_a_dict_of_schemas_loaded_as_the_app_is(app_dir: Path) -> None:
    import uuid

    assert load_overrides("schemas:overrides") == {uuid.UUID: {"type": "string", "format": "uuid"}}
    cases = {
        "schemas:listed": "--overrides 'schemas:listed' is a list, not a dict of types to JSON"
        " Schemas, such as {UUID: {'type': 'string'}}",
        "schemas:loose": "--overrides 'schemas:loose': the schema of <class 'uuid.UUID'> is a"
        " str, not a dict; expected a dict of types to JSON Schemas",
        "schemas:nope": f"--overrides 'schemas:nope': 'schemas' has no attribute 'nope' (in"
        f" {app_dir / 'schemas.py'})",
        "nowhere:x": "--overrides 'nowhere:x': no module named 'nowhere' on sys.path",
    }
    for spec, message in cases.items():
        with pytest.raises(LoadError) as info:
            load_overrides(spec)
        assert str(info.value).startswith(message), str(info.value)
