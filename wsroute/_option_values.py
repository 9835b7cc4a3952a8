"""How the ``wsroute`` command reads each option's value, from its flag or its
``WSROUTE_*`` variable (``_options.py`` declares the options): each parser returns
the value or raises what argparse reports as that option's error."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from ._logs import parse_level
from ._proxy import TrustedProxies


def port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid port {text!r}: expected an integer from 0 to 65535 (0 picks a free port)"
        )
    return port


def argument(parse: Callable[[str], str]) -> Callable[[str], str]:
    """``parse``, raising what argparse reports as the option's error."""

    def parse_argument(text: str) -> str:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_argument


def log_level(text: str) -> str:
    return parse_level(text).lower()


def compression(text: str) -> str:
    if text not in ("deflate", "off"):
        raise argparse.ArgumentTypeError(f"expected deflate or off, not {text!r}")
    return text


def probe_path(text: str) -> str:
    if text != "off" and (not text.startswith("/") or "?" in text or "#" in text):
        raise argparse.ArgumentTypeError(f"expected a path such as /healthz, or off, not {text!r}")
    return text


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected {' or '.join(choices)}, not {text!r}")
        return text

    return parse


def boolean(text: str) -> bool:
    """An environment variable's truth value (flags are ``--x``/``--no-x``)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def trusted_ips(text: str) -> str:
    try:
        TrustedProxies.parse(text)
    except ValueError as exc:
        message = str(exc).removeprefix("App option forwarded_allow_ips ")
        raise argparse.ArgumentTypeError(message) from None
    return text


def non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}: expected an integer >= 1")
    return count


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def switch(text: str) -> bool:
    """An on/off option's environment variable."""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(_TRUE + _FALSE)}, not {text!r}")


def document_format(text: str) -> str:
    if text not in ("json", "yaml"):
        raise argparse.ArgumentTypeError(f"expected json or yaml, not {text!r}")
    return text


def ws_url(text: str) -> str:
    if not re.fullmatch(r"wss?://[^/?#\s]+(/\S*)?", text):
        raise argparse.ArgumentTypeError(
            f"expected the URL clients connect to, ws:// or wss://, not {text!r}"
        )
    return text
