"""Files for plain GET requests: a directory (``app.add_static``) and the built-in
JavaScript client (``App(client_path=...)``).

Answers carry an ``ETag`` and ``Cache-Control: no-cache``: a browser asks again
each time, and an unchanged file costs a ``304`` without a body. A directory asked
for without its slash (``/static``, ``/static/docs``) is redirected to it with one, so
that the relative links of its index page resolve inside it. Files are read in
a worker thread, so a slow disk never blocks the connections being served. Only
files below the directory are served: ``..``, absolute parts and symbolic links
that lead outside it are a 404, as a missing file is.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import mimetypes
import os
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlencode

import trio

from .._errors import RegistrationError
from .._http import Response
from .._request import Request

#: Content types wsroute names itself (the platform's table may lack or misname them).
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".ts": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
}

#: The package's own files, served by ``client_path``.
CLIENT_SCRIPT: Final = "wsroute.js"


def content_type(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    known = _TYPES.get(suffix)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(name)
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


#: What ``_read`` finds at a directory's path: not a file, but a redirect to its slash.
_DIRECTORY: Final = "directory"


def _answer(request: Request, data: bytes, etag: str, name: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    # A 304's headers replace those a cache keeps: the same type as the 200's.
    kind = content_type(name)
    if etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(b"", 304, content_type=kind, headers=headers)
    return Response(data, content_type=kind, headers=headers)


def _to_directory(request: Request) -> Response:
    """A 301 to the directory's own path with its slash, written relative to the
    request (``./docs/``), so that it never leaves the server."""
    location = f"./{request.path.rsplit('/', 1)[1]}/"
    if request.query_items:
        location += f"?{urlencode(request.query_items)}"
    return Response(f"moved to {location}\n", 301, headers={"Location": location})


class StaticFiles:
    """The files of ``directory``, answering the paths below a mount point.

    Raises:
        RegistrationError: ``directory`` is not a directory.
    """

    __slots__ = ("_index", "_root")

    def __init__(self, directory: str | os.PathLike[str], *, index: str = "index.html") -> None:
        root = Path(directory)
        if not root.is_dir():
            raise RegistrationError(
                f"static directory {str(directory)!r} is not a directory (relative paths are"
                f" read from the current directory, {os.getcwd()}): pass an absolute path,"
                " e.g. Path(__file__).parent / 'static'"
            )
        self._root = root.resolve()
        self._index = index

    async def __call__(self, rest: str, request: Request) -> Response | None:
        if not request.path.endswith("/") and not rest:
            return _to_directory(request)  # the mount point itself: /static
        path = self._locate(rest)
        if path is None:
            return None
        try:
            found = await trio.to_thread.run_sync(_read, self._root, path)
        except OSError:
            return None
        if found is None:
            return None
        if isinstance(found, str):  # _DIRECTORY
            return _to_directory(request)
        data, etag = found
        return _answer(request, data, etag, path.name)

    def _locate(self, rest: str) -> Path | None:
        parts = unquote(rest).split("/")
        if any(part == ".." or "\\" in part or "\0" in part for part in parts):
            return None
        path = self._root.joinpath(*(part for part in parts if part not in ("", ".")))
        if not rest or rest.endswith("/"):
            path = path / self._index
        return path


def _read(root: Path, path: Path) -> tuple[bytes, str] | str | None:
    """The file's bytes and ETag; ``_DIRECTORY`` for a directory; ``None`` unless a
    regular file inside ``root`` (once symbolic links are followed)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        return None
    if resolved.is_dir():
        return _DIRECTORY
    if not resolved.is_file():
        return None
    stat = resolved.stat()
    return resolved.read_bytes(), f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


class PackageFile:
    """One file shipped inside the wsroute package (the JavaScript client)."""

    __slots__ = ("_data", "_etag", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._data: bytes | None = None
        self._etag = ""

    async def __call__(self, request: Request) -> Response:
        if self._data is None:
            resource = importlib.resources.files("wsroute").joinpath("static", self._name)
            self._data = await trio.to_thread.run_sync(resource.read_bytes)
            self._etag = f'"{hashlib.sha256(self._data).hexdigest()[:16]}"'
        return _answer(request, self._data, self._etag, self._name)
