"""The chat example in a real browser: headless Chromium (Debian's ``chromium``) driven
by Playwright, against a real ``wsroute run`` process that serves the page, the
JavaScript client and the WebSocket on one port.

Without Chromium or Playwright these tests skip, saying which is missing; in CI they
must run (tests/needs.py). Plain (non-async) tests: Playwright's sync API runs its
own event loop, which must not be trio's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cliproc import child_env, free_port
from .needs import missing
from .tlstools import Certs, certs

__all__ = ["certs"]  # fixture, imported to be found

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0
#: What Chromium needs to start headless as root on a machine without a network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if found is None:
        missing("no Chromium: apt-get install chromium (or set $CHROMIUM)")
    return found


class ChatServer:
    """``wsroute run app:app --app-dir examples/chat`` on a fixed port, restartable;
    ``options`` are more flags of ``wsroute run``."""

    def __init__(self, port: int, *options: str) -> None:
        self.port = port
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wsroute",
                "run",
                "app:app",
                "--app-dir",
                "examples/chat",
                "--port",
                str(self.port),
                *self.options,
            ],
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the chat server did not start") from None
                time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=TIMEOUT)


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("no Playwright: pip install playwright (the test extra has it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A browser tab on the chat page, recording what went wrong in it."""

    def __init__(self, browser: Any, port: int, scheme: str = "http") -> None:
        # The TLS test's certificate comes from a CA Chromium does not know.
        self.page = browser.new_context(ignore_https_errors=scheme == "https").new_page()
        self.page.set_default_timeout(TIMEOUT * 1000)
        self.errors: list[str] = []  # uncaught exceptions and console.error lines
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on(
            "console",
            lambda message: message.type == "error" and self.errors.append(message.text),
        )
        self.page.goto(f"{scheme}://127.0.0.1:{port}/")

    def join(self, nick: str, room: str) -> None:
        self.page.fill("#nick", nick)
        self.page.fill("#room", room)
        self.page.click("#join")
        self.wait_text("#roster", f"In {room}:")

    def say(self, text: str) -> None:
        self.page.wait_for_selector("#text:enabled")
        self.page.fill("#text", text)
        self.page.click("#say")

    def wait_text(self, selector: str, text: str) -> None:
        self.page.wait_for_function(
            "([selector, text]) => document.querySelector(selector).textContent.includes(text)",
            arg=[selector, text],
        )

    def wait_state(self, state: str) -> None:
        self.page.wait_for_selector(f'#state[data-state="{state}"]')


def test_the_chat_page_works_in_chromium_and_survives_a_server_restart(
    browser: Any, chat_server: ChatServer
) -> None:
    ada, bob = Page(browser, chat_server.port), Page(browser, chat_server.port)
    ada.join("ada", "lobby")  # a direct request: its reply is the roster
    ada.wait_state("open")
    bob.join("bob", "lobby")
    ada.wait_text("#log", "bob joined lobby")  # an event published to the room
    ada.wait_text("#roster", "In lobby: ada")
    bob.say("hello from bob")  # a broadcast
    ada.wait_text("#log", "bob: hello from bob")
    bob.wait_text("#log", "bob: hello from bob")  # the sender is in the room too
    assert ada.errors == [] and bob.errors == []

    chat_server.kill()
    ada.wait_state("reconnecting")
    chat_server.start()
    ada.wait_state("open")
    bob.wait_state("open")
    # Both rejoined the room by replaying their join, before turning open.
    bob.say("after the restart")
    ada.wait_text("#log", "bob: after the restart")
    for page in (ada, bob):
        # While the server was down, Chromium itself reports each failed attempt to
        # connect; nothing else may have gone wrong.
        unexpected = [e for e in page.errors if "WebSocket connection to" not in e]
        assert unexpected == []


def test_the_chat_page_served_over_tls_connects_with_wss(browser: Any, certs: Certs) -> None:
    # With --ssl-certfile the page is https://, and its client must connect to
    # wss:// on the same port: a ws:// URL would speak plain HTTP to the TLS port.
    server = ChatServer(free_port(), "--ssl-certfile", str(certs.combined))
    server.start()
    try:
        ada = Page(browser, server.port, scheme="https")
        ada.join("ada", "lobby")
        ada.wait_state("open")
        ada.say("over TLS")
        ada.wait_text("#log", "ada: over TLS")
        assert ada.errors == []
    finally:
        server.kill()


def test_the_page_and_the_client_script_are_served_by_the_app(chat_server: ChatServer) -> None:
    # Without a browser: what a browser would fetch, checked as plain HTTP.
    import urllib.request

    base = f"http://127.0.0.1:{chat_server.port}"
    with urllib.request.urlopen(f"{base}/", timeout=TIMEOUT) as answer:
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'<script type="module" src="chat.js">' in answer.read()
    with urllib.request.urlopen(f"{base}/chat.js", timeout=TIMEOUT) as answer:
        assert b'from "/wsroute.js"' in answer.read()
    with urllib.request.urlopen(f"{base}/wsroute.js", timeout=TIMEOUT) as answer:
        assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert b"export function connect" in answer.read()
