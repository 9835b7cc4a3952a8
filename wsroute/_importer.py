"""Load the :class:`App` named by ``MODULE:ATTR`` for the CLI (and the schemas of
``--overrides``, named the same way).

The loader is precise about *what* went wrong, because each case has a different
fix: a malformed spec, a module that is not on ``sys.path`` (wrong name or
``--app-dir``), a module that exists but whose own imports fail (a missing
dependency), a missing attribute, or an attribute that is not an App. Each of
those raises :class:`LoadError` with one line that names the fix. Any other
exception raised while the module runs is a bug in that module: it propagates
unchanged, because its traceback is what the user needs.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Mapping
from types import ModuleType, TracebackType
from typing import Any

from ._app import App
from ._errors import LoadError

_FORMAT = "expected MODULE:ATTR, such as 'app:app' or 'myproject.server:app'"


def load_app(spec: str, app_dir: str | None = None) -> App:
    """Import ``MODULE`` and return its App ``ATTR`` (dotted attributes allowed).

    Args:
        spec: ``"module.path:attr"``; ``attr`` may be dotted, as in ``"app:factory.app"``.
        app_dir: directory put first on ``sys.path`` before importing; the current
            directory when ``None``.

    Raises:
        LoadError: the spec is malformed, the module or attribute does not exist,
            the module's own imports fail, or the attribute is not an App.
        Exception: anything else the module raised while being imported.
    """
    module, target = _load_attr(spec, app_dir)
    if not isinstance(target, App):
        fix = (
            "; if it builds the app, call it at module level (app = create_app())"
            if callable(target) and not isinstance(target, type)
            else ""
        )
        raise LoadError(f"{spec!r} is {_kind(target)}, not a wsroute.App{fix}{_apps_hint(module)}")
    return target


def load_overrides(spec: str, app_dir: str | None = None) -> dict[Any, dict[str, Any]]:
    """Import ``MODULE`` and return ``ATTR``, the schemas of ``--overrides``: a mapping
    of each type to its JSON Schema, as ``wsroute.contracts`` functions take it.

    Raises:
        LoadError: as for :func:`load_app`, or ``ATTR`` is not such a mapping.
        Exception: anything else the module raised while being imported.
    """
    try:
        _, target = _load_attr(spec, app_dir)
    except LoadError as exc:
        raise LoadError(f"--overrides {spec!r}: {exc}") from None
    expected = "a dict of types to JSON Schemas, such as {UUID: {'type': 'string'}}"
    if not isinstance(target, Mapping):
        raise LoadError(f"--overrides {spec!r} is {_kind(target)}, not {expected}")
    for tp, schema in target.items():
        if not isinstance(schema, Mapping):
            raise LoadError(
                f"--overrides {spec!r}: the schema of {tp!r} is {_kind(schema)}, not a dict;"
                f" expected {expected}"
            )
    return {tp: dict(schema) for tp, schema in target.items()}


def _load_attr(spec: str, app_dir: str | None) -> tuple[ModuleType, Any]:
    """``MODULE`` imported, and its (dotted) ``ATTR``."""
    module_name, attr_path = _parse(spec)
    path = _prepend_path(os.getcwd() if app_dir is None else app_dir)
    module = _import(module_name, path)
    target: Any = module
    for depth, attr in enumerate(attr_path):
        try:
            target = getattr(target, attr)
        except AttributeError:
            owner = module_name if depth == 0 else ".".join(attr_path[:depth])
            raise LoadError(
                f"{owner!r} has no attribute {attr!r} (in {_where(module)}){_apps_hint(module)}"
            ) from None
    return module, target


def _parse(spec: str) -> tuple[str, list[str]]:
    module_name, colon, attr = spec.partition(":")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path, _, stem = module_name.removesuffix(".py").replace("\\", "/").rpartition("/")
        hint = f" and --app-dir {path}" if path else ""
        raise LoadError(
            f"{spec!r}: MODULE is a module name, not a file path: use"
            f" '{stem}:{attr or 'app'}'{hint}"
        )
    if not (colon and _dotted(module_name) and _dotted(attr)):
        raise LoadError(f"{spec!r} is not a valid app spec: {_FORMAT}")
    return module_name, attr.split(".")


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _prepend_path(app_dir: str) -> str:
    path = os.path.abspath(app_dir)
    if not os.path.isdir(path):
        raise LoadError(f"app dir {app_dir!r} is not a directory (--app-dir / WSROUTE_APP_DIR)")
    if sys.path[:1] != [path]:
        sys.path.insert(0, path)
    return path


def _import(module_name: str, app_dir: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _is_self_or_parent(exc.name, module_name):
            raise LoadError(
                f"no module named {exc.name!r} on sys.path (app dir {app_dir}): check the"
                " module name, or pass --app-dir DIR with the directory that contains it"
            ) from None
        raise LoadError(
            f"module {module_name!r} was found, but importing it failed at"
            f" {_origin(exc.__traceback__)}: {exc}; is a dependency missing?"
        ) from None
    except ImportError as exc:
        raise LoadError(
            f"module {module_name!r} was found, but importing it failed at"
            f" {_origin(exc.__traceback__)}: {exc}"
        ) from None


def _is_self_or_parent(missing: str | None, module_name: str) -> bool:
    """Whether the missing module is the one asked for or a package on its path."""
    parts = module_name.split(".")
    return missing in {".".join(parts[: i + 1]) for i in range(len(parts))}


def _origin(tb: TracebackType | None) -> str:
    """``file:line`` of the innermost frame outside importlib: the failing import."""
    frames = [
        frame for frame in traceback.extract_tb(tb) if not frame.filename.startswith("<frozen ")
    ]
    if not frames:
        return "?"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def _where(module: ModuleType) -> str:
    return getattr(module, "__file__", None) or repr(module)


def _kind(value: object) -> str:
    if isinstance(value, ModuleType):
        return "a module"
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"the function {value.__qualname__}"
    article = "an" if type(value).__name__[:1].lower() in "aeiou" else "a"
    return f"{article} {type(value).__name__}"


def _apps_hint(module: ModuleType) -> str:
    names = [name for name, value in vars(module).items() if isinstance(value, App)]
    if not names:
        return ""
    choices = ", ".join(f"'{module.__name__}:{name}'" for name in names)
    return f"; the module's App: {choices}"


def user_frames(exc: BaseException) -> TracebackType | None:
    """``exc``'s traceback from the user's module down, without the loader's frames.

    ``importlib`` runs a module's code through ``_call_with_frames_removed``; what
    follows the first such frame is the user's code (the same cut CPython makes for
    an ``import`` statement). Falls back to the whole traceback.
    """
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_call_with_frames_removed" and code.co_filename.startswith("<frozen "):
            return tb.tb_next
        tb = tb.tb_next
    return exc.__traceback__
