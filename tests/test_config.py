"""App options (``wsroute._config``): validated once when the App is made.

The defaults are the ones docs/handlers.md's option table gives (read from the page),
and every invalid value is the ``ValueError`` that page promises, naming the option.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from wsroute import App, Config, SlowConsumerPolicy
from wsroute._topics import TopicRules

HANDLERS_MD = Path(__file__).resolve().parent.parent / "docs" / "handlers.md"


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrency": 0},
        {"max_concurrency": 1.5},
        {"max_concurrency": True},
        {"max_queued_requests": 0},
        {"outbox_size": -1},
        {"max_message_size": 0},
        {"handshake_timeout": 0},
        {"close_timeout": -1.0},
        {"shutdown_timeout": "10"},
        {"hook_timeout": 0},
        {"slow_consumer": "bogus"},
        {"default_topic": ""},
    ],
    ids=lambda options: "-".join(f"{k}={v!r}" for k, v in options.items()),
)
def test_bad_options_raise_value_error(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        App(**options)


def test_slow_consumer_accepts_a_policy_name() -> None:
    assert App(slow_consumer="drop_oldest").config.slow_consumer is SlowConsumerPolicy.DROP_OLDEST
    assert App().config.slow_consumer is SlowConsumerPolicy.CLOSE


def documented_defaults() -> dict[str, str | None]:
    """Option name -> the value its row in the option table starts its default with."""
    text = HANDLERS_MD.read_text()
    table = text[text.index("| option | default | meaning |") :].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        name, default, _ = (cell.strip() for cell in line.strip("|").split("|", 2))
        literal = re.match(r"`([^`]*)`", default)
        rows[name.strip("`")] = literal[1] if literal else None
    return rows


def test_every_option_has_the_default_docs_handlers_md_gives() -> None:
    documented = documented_defaults()
    fields = attrs.fields_dict(Config)
    assert set(fields) <= set(documented), "options missing from docs/handlers.md"
    defaults = Config()
    for name in fields:
        shown = documented[name]
        assert shown is not None, f"{name}: no value in the default column"
        expected: Any = ast.literal_eval(shown)
        actual = getattr(defaults, name)
        if isinstance(actual, SlowConsumerPolicy):
            actual = actual.value
        if isinstance(actual, TopicRules):  # the App option's None: no patterns
            actual = actual or None
        if name == "forwarded_allow_ips":  # as the App option is written
            actual = ",".join(actual)
        assert actual == expected and type(actual) is type(expected), name


POSITIVE = "must be a positive number, not"
INTEGER = "must be an integer >= 1, not"
WINDOW = r"must be \(count, seconds\) such as \(100, 1.0\), or None; not"

INVALID = [
    *[
        (option, value, INTEGER)
        for option in ("max_concurrency", "max_queued_requests", "outbox_size", "max_message_size")
        for value in (0, -1, 1.5, True, "8", None)
    ],
    *[
        (option, value, INTEGER)
        for option in ("max_connections", "max_connections_per_ip")
        for value in (0, 2.0, False, "8")
    ],
    *[
        (option, value, POSITIVE)
        for option in ("handshake_timeout", "close_timeout", "shutdown_timeout", "hook_timeout")
        for value in (0, -0.5, float("nan"), True, "10", None)
    ],
    *[(option, value, POSITIVE) for option in ("ping_timeout",) for value in (0, None)],
    *[
        (option, value, POSITIVE)
        for option in ("ping_interval", "handler_timeout")
        for value in (0, -1, float("nan"), "1")
    ],
    *[
        (option, value, WINDOW)
        for option in ("rate_limit", "invalid_message_limit", "connect_rate_limit")
        for value in ((0, 1.0), (1, 0), (1.5, 1.0), (True, 1.0), (1, True), (1, 2, 3), [10, 1.0])
    ],
    ("default_topic", "", "must be a non-empty string or None"),
    ("default_topic", 5, "must be a non-empty string or None"),
    ("allowed_origins", "https://example.com", "must be a list of origins, not one string"),
    ("subprotocols", "chat.v1", "must be a list of names, not one string"),
    ("proxy_headers", "yes", "must be True or False, not 'yes'"),
    ("proxy_headers", 1, "must be True or False, not 1"),
    ("forwarded_allow_ips", "10.0.0.1,proxy", "lists 'proxy', which is not an IP address"),
    ("forwarded_allow_ips", "10.0.0.0/33", "lists '10.0.0.0/33', which is not an IP address"),
    ("forwarded_allow_ips", [10], "lists 10, which is not a string"),
    ("forwarded_allow_ips", 5, "must be a comma-separated string or a list"),
]


@pytest.mark.parametrize(
    ("option", "value", "message"), INVALID, ids=[f"{o}={v!r}" for o, v, _ in INVALID]
)
def test_every_invalid_value_is_a_value_error_naming_the_option(
    option: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^App option {option} {message}"):
        App(**{option: value})


@pytest.mark.parametrize("value", ["block", "CLOSE", None, ["close"]])
def test_an_unknown_policy_lists_the_valid_ones(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        App(slow_consumer=value)
    assert str(info.value) == (
        "App option slow_consumer must be 'close', 'drop_oldest' or 'drop_newest'"
        f" (or a wsroute.SlowConsumerPolicy), not {value!r}"
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("allowed_origins", [1], id="allowed_origins=[1]"),
        pytest.param("allowed_origins", 5, id="allowed_origins=5"),
        pytest.param("subprotocols", 5, id="subprotocols=5"),
        pytest.param("subprotocols", [1], id="subprotocols=[1]"),
    ],
)
def test_origins_and_subprotocols_of_the_wrong_type_are_value_errors(
    option: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=f"^App option {option} "):
        App(**{option: value})


def test_valid_values_are_kept_as_given_or_normalised() -> None:
    config = App(
        max_concurrency=4,
        handshake_timeout=1,  # an int for seconds is fine
        ping_interval=None,
        handler_timeout=0.25,
        max_connections=None,
        rate_limit=(100, 1),
        invalid_message_limit=None,
        connect_rate_limit=(20, 0.5),
        default_topic=None,
        allowed_origins=["https://App.example.com/", "http://localhost:8000"],
        subprotocols=["chat.v2", "chat.v1"],
    ).config
    assert (config.max_concurrency, config.handshake_timeout) == (4, 1)
    assert (config.ping_interval, config.handler_timeout, config.max_connections) == (
        None,
        0.25,
        None,
    )
    assert (config.rate_limit, config.invalid_message_limit) == ((100, 1), None)
    assert config.connect_rate_limit == (20, 0.5)
    assert config.default_topic is None
    assert config.allowed_origins == frozenset({"https://app.example.com", "http://localhost:8000"})
    assert config.subprotocols == ("chat.v2", "chat.v1")

    def allow(origin: str) -> bool:
        return origin.endswith(".example.com")

    assert App(allowed_origins=allow).config.allowed_origins is allow


def test_config_is_frozen() -> None:
    config = App().config
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.max_concurrency = 2  # type: ignore[misc]
