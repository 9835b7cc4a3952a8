"""The public surface, pinned: what each public module exports, and that public
signatures name only public types. A change here is an API change: make it on
purpose, and say so in the docs."""

from __future__ import annotations

import enum
import importlib
import inspect
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from wsroute._routing import Handler

PUBLIC = {
    "wsroute": {
        "App",
        "BrokerClosed",
        "BrokerError",
        "CoalesceStats",
        "Config",
        "Connection",
        "ConnectionClosed",
        "Deflate",
        "Disconnect",
        "EventInfo",
        "HandlerError",
        "Headers",
        "History",
        "HistoryEvent",
        "HistoryUnsupported",
        "JSONFormatter",
        "ListenError",
        "LoadError",
        "Metrics",
        "NotRunningError",
        "AlreadyRunningError",
        "Position",
        "Presence",
        "PresenceEntry",
        "PresenceStats",
        "PresenceUnsupported",
        "ProtocolError",
        "RegistrationError",
        "Reject",
        "Request",
        "Response",
        "RouteInfo",
        "RouteKind",
        "SlowConsumerPolicy",
        "TopicHistory",
        "WsrouteError",
        "__version__",
        "bearer_auth",
        "make_converter",
    },
    "wsroute.testing": {
        "ClientClosed",
        "CloseInfo",
        "DEFAULT_TIMEOUT",
        "ErrorReply",
        "Event",
        "ExpectationFailed",
        "HandshakeRejected",
        "Reply",
        "RequestError",
        "TestClient",
        "broker_checks",
        "check_broker",
        "open_app",
        "open_client",
    },
    "wsroute.client": {
        "Backoff",
        "Client",
        "ClientClosed",
        "ClientError",
        "ClientHandlerError",
        "ConnectError",
        "Disconnected",
        "Event",
        "EventsLost",
        "InvalidReply",
        "Overflow",
        "RETRY_CODES",
        "RETRY_STATUSES",
        "Replayed",
        "RequestTimeout",
        "State",
        "StateChange",
        "Stream",
        "connect",
    },
    "wsroute.contracts": {
        "DIALECT",
        "AppSchemas",
        "AppSource",
        "EventSchema",
        "RouteSchema",
        "RouteTable",
        "SchemaError",
        "SchemaSet",
        "asyncapi",
        "asyncapi_json",
        "asyncapi_yaml",
        "json_schema",
        "schema_set",
        "schemas_for",
        "typescript",
    },
    "wsroute.brokers": {
        "Broker",
        "BrokerMessage",
        "BrokerSession",
        "BrokerState",
        "History",
        "HistoryPage",
        "MemoryBroker",
        "Position",
        "RedisBroker",
        "RedisClusterBroker",
        "StateListener",
        "from_url",
    },
}

#: Objects the framework makes, never the user: their constructors are not public API
#: (they take the runtime's private parts).
MADE_BY_WSROUTE = {"wsroute.Connection", "wsroute.testing.TestClient", "wsroute.client.Client"}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_the_exports_are_pinned(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == PUBLIC[name]
    for export in module.__all__:
        assert hasattr(module, export), export
    # Nothing public besides __all__ (private names and submodules aside).
    extra = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not inspect.ismodule(value) and attr != "annotations"
    }
    assert extra <= PUBLIC[name]


def _public_objects() -> dict[int, str]:
    found = {}
    for name, exports in PUBLIC.items():
        module = importlib.import_module(name)
        for export in exports:
            found[id(getattr(module, export))] = f"{name}.{export}"
    return found


def _private_types(tp: Any, public: dict[int, str]) -> Iterator[str]:
    if isinstance(tp, type) and tp.__module__.startswith("wsroute") and id(tp) not in public:
        yield f"{tp.__module__}.{tp.__qualname__}"
    for arg in typing.get_args(tp):
        yield from _private_types(arg, public)


def _signatures() -> Iterator[tuple[str, Any]]:
    """Every public function, method, property and attribute annotation, by name."""
    for name, exports in PUBLIC.items():
        module = importlib.import_module(name)
        for export in sorted(exports):
            obj = getattr(module, export)
            label = f"{name}.{export}"
            if not inspect.isclass(obj):
                if callable(obj):
                    yield label, obj
                continue
            if issubclass(obj, BaseException | enum.Enum):
                continue
            if label not in MADE_BY_WSROUTE:
                yield f"{label}.__init__", obj.__init__
            for attr, value in vars(obj).items():
                if attr.startswith("_") and attr != "__call__":
                    continue
                if isinstance(value, property):
                    value = value.fget
                if isinstance(value, staticmethod | classmethod):
                    value = value.__func__
                if callable(value):
                    yield f"{label}.{attr}", value
            yield f"{label} (attributes)", obj


def test_public_signatures_name_only_public_types() -> None:
    public = _public_objects()
    problems = {}
    for label, target in _signatures():
        try:
            hints = typing.get_type_hints(target)
        except Exception as exc:  # a name only imported for type checking
            problems[label] = [f"unresolvable annotation: {exc}"]
            continue
        private = sorted(
            {
                t
                for key, hint in hints.items()
                if not key.startswith("_")
                for t in _private_types(hint, public)
            }
        )
        if private:
            problems[label] = private
    assert problems == {}


def test_the_check_finds_a_private_type() -> None:
    def leaky(handler: Handler) -> list[Handler]:
        return [handler]

    assert sorted(_private_types(typing.get_type_hints(leaky)["handler"], {})) == [
        "wsroute._routing.Handler"
    ]
