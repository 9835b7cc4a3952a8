"""Static files for plain GET requests (``wsroute._server.static``), over real sockets."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urljoin

import pytest

from wsroute import App, RegistrationError
from wsroute._server.static import content_type

from .rawws import http_exchange
from .test_http import get

Serve = Callable[[App], Awaitable[int]]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>home</title>")
    (root / "js" / "app.js").write_text("export const x = 1;\n")
    (root / "js" / "index.html").write_text("js index")
    (root / "data.bin").write_bytes(bytes(range(256)))
    (root / "a b.txt").write_text("spaced")
    (tmp_path / "secret.txt").write_text("outside the root")
    os.symlink(tmp_path / "secret.txt", root / "link-out.txt")
    os.symlink(root / "a b.txt", root / "link-in.txt")
    return root


async def serve_site(serve: Serve, site: Path, path: str = "/") -> int:
    app = App()
    app.add_static(path, site)

    @app.get("/api")
    async def api() -> str:
        return "route wins over the mount"

    return await serve(app)


@pytest.mark.parametrize(
    ("target", "body", "kind"),
    [
        ("/", b"<!doctype html><title>home</title>", "text/html; charset=utf-8"),
        ("/index.html", b"<!doctype html><title>home</title>", "text/html; charset=utf-8"),
        ("/js/app.js", b"export const x = 1;\n", "text/javascript; charset=utf-8"),
        ("/js/", b"js index", "text/html; charset=utf-8"),
        ("/data.bin", bytes(range(256)), "application/octet-stream"),
        ("/a%20b.txt", b"spaced", "text/plain; charset=utf-8"),
        ("/link-in.txt", b"spaced", "text/plain; charset=utf-8"),
        ("/./js//app.js", b"export const x = 1;\n", "text/javascript; charset=utf-8"),
    ],
)
async def test_files_are_served(
    serve: Serve, site: Path, target: str, body: bytes, kind: str
) -> None:
    port = await serve_site(serve, site)
    answer = await http_exchange(port, get(target))
    assert (answer.status, answer.body, answer.headers["content-type"]) == (200, body, kind)
    assert answer.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "target",
    [
        "/missing.html",
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/js/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/link-out.txt",  # a link that leads outside the directory
        "/%00",
    ],
)
async def test_nothing_outside_the_directory_is_served(
    serve: Serve, site: Path, target: str
) -> None:
    port = await serve_site(serve, site)
    answer = await http_exchange(port, get(target))
    assert (answer.status, answer.body) == (404, b"not found\n"), target


async def test_an_unchanged_file_is_a_304(serve: Serve, site: Path) -> None:
    port = await serve_site(serve, site)
    first = await http_exchange(port, get("/js/app.js"))
    etag = first.headers["etag"]
    again = await http_exchange(port, get("/js/app.js", f'If-None-Match: "x", {etag}'))
    assert (again.status, again.body, again.headers["etag"]) == (304, b"", etag)
    # A cache replaces the headers it keeps with a 304's: not with another type.
    assert again.headers["content-type"] == "text/javascript; charset=utf-8"
    (site / "js" / "app.js").write_text("export const x = 2;\n")
    changed = await http_exchange(port, get("/js/app.js", f"If-None-Match: {etag}"))
    assert (changed.status, changed.body) == (200, b"export const x = 2;\n")


async def test_a_mount_below_a_prefix(serve: Serve, site: Path) -> None:
    port = await serve_site(serve, site, "/static/")
    assert (await http_exchange(port, get("/static/js/app.js"))).status == 200
    assert (await http_exchange(port, get("/static/"))).status == 200
    assert (await http_exchange(port, get("/staticx/js/app.js"))).status == 426
    assert (await http_exchange(port, get("/js/app.js"))).status == 426  # not mounted there
    assert (await http_exchange(port, get("/api"))).body == b"route wins over the mount"


@pytest.mark.parametrize(
    ("mount", "target", "location"),
    [
        ("/", "/js", "./js/"),
        ("/", "/js?v=1&x=a%20b", "./js/?v=1&x=a+b"),
        ("/static/", "/static", "./static/"),  # index.html's relative links need the slash
        ("/static/", "/static/js", "./js/"),
    ],
)
async def test_a_directory_without_its_slash_is_redirected_to_it(
    serve: Serve, site: Path, mount: str, target: str, location: str
) -> None:
    port = await serve_site(serve, site, mount)
    answer = await http_exchange(port, get(target))
    assert (answer.status, answer.headers["location"]) == (301, location)
    assert (await http_exchange(port, get(urljoin(target, location)))).status == 200


async def test_routes_and_the_client_come_before_a_root_mount(serve: Serve, site: Path) -> None:
    port = await serve_site(serve, site)
    assert (await http_exchange(port, get("/api"))).body == b"route wins over the mount"
    assert (await http_exchange(port, get("/wsroute.js"))).body.startswith(b"/**")


def test_the_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match=r"is not a directory.*absolute path"):
        App().add_static("/", tmp_path / "nope")


def test_a_path_is_mounted_once(site: Path) -> None:
    app = App()
    app.add_static("/s", site)
    with pytest.raises(RegistrationError, match="'/s' is already mounted"):
        app.add_static("/s/", site)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.css", "text/css; charset=utf-8"),
        ("a.mjs", "text/javascript; charset=utf-8"),
        ("a.json", "application/json"),
        ("a.svg", "image/svg+xml"),
        ("a.png", "image/png"),
        ("a.unknown-type", "application/octet-stream"),
        ("README", "application/octet-stream"),
    ],
)
def test_content_types(name: str, kind: str) -> None:
    assert content_type(name) == kind
