"""The AsyncAPI document (wsroute/contracts/asyncapi.py): checked by AsyncAPI's own
parser for every example app and for tests/contracts_app.py, which uses every
feature; its parts read back; the frames a real server sends validated against it;
served by ``App(asyncapi=...)`` and written by ``wsroute asyncapi``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
import trio
import yaml

from wsroute import App, Connection, RegistrationError, bearer_auth
from wsroute._errors import SchemaError
from wsroute.contracts import asyncapi, asyncapi_json, asyncapi_yaml, typescript

from .cliproc import REPO, assert_one_line_error, wsroute_cli
from .rawws import http_exchange
from .test_js_client import JS, check_node_modules, find_node
from .wsclient import connect

EXAMPLES = sorted(path.parent for path in (REPO / "examples").glob("*/app.py"))
FEATURES = Path(__file__).resolve().parent / "contracts_app.py"
#: What AsyncAPI's parser may say about a good document: that 3.1.0 exists (the
#: issue asks for 3.0). Anything else, warnings and hints included, fails.
ALLOWED = {"asyncapi-latest-version"}


def load(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh copy of the module at ``path`` (apps serve once at a time)."""
    name = f"contracts_{path.parent.name}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def features(monkeypatch: pytest.MonkeyPatch) -> Any:
    return load(FEATURES, monkeypatch)


@pytest.fixture(scope="module")
def node() -> str:
    found, _ = find_node()
    check_node_modules()
    return found


def parse(node: str, *files: Path) -> dict[str, list[dict[str, Any]]]:
    """The diagnostics of AsyncAPI's parser (tests/js/asyncapi.mjs) for each file."""
    result = subprocess.run(
        [node, "asyncapi.mjs", *map(str, files)],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["file"]: line["diagnostics"] for line in lines}


# -- the official parser ---------------------------------------------------------------


def test_every_example_and_the_feature_app_pass_the_official_parser(
    node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = []
    for path in [*(directory / "app.py" for directory in EXAMPLES), FEATURES]:
        app = load(path, monkeypatch).app
        name = path.parent.name if path != FEATURES else "features"
        (tmp_path / f"{name}.json").write_bytes(asyncapi_json(app))
        (tmp_path / f"{name}.yaml").write_text(asyncapi_yaml(app))
        files += [tmp_path / f"{name}.json", tmp_path / f"{name}.yaml"]
    assert len(EXAMPLES) >= 2
    # And one broken on purpose, to see that the parser finds mistakes: a reply
    # naming a message its channel lacks, an operation without action.
    broken = json.loads(asyncapi_json(app))
    broken["operations"]["get_item"]["reply"]["messages"].append(
        {"$ref": "#/channels/connection/messages/nothing"}
    )
    del broken["operations"]["join"]["action"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    found = parse(node, *files, tmp_path / "broken.json")
    assert set(found) == {*map(str, files), str(tmp_path / "broken.json")}
    mistakes = found.pop(str(tmp_path / "broken.json"))
    assert [d for d in mistakes if d["severity"] == 0], mistakes
    for file, diagnostics in found.items():
        assert {d["code"] for d in diagnostics} <= ALLOWED, (file, diagnostics)


# -- what the document says ------------------------------------------------------------


def messages(document: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    """The messages of an operation (``reply`` for its reply), refs followed."""
    operation, _, part = operation.partition(":")
    op = document["operations"][operation]
    refs = op["reply"]["messages"] if part == "reply" else op["messages"]
    found = []
    for ref in refs:
        _, _, channel, _, key = ref["$ref"].split("/")
        found.append(document["channels"][channel]["messages"][key])
    return found


def test_a_direct_route_is_a_send_operation_with_its_reply(features: Any) -> None:
    document = asyncapi(features.app)
    op = document["operations"]["get_item"]
    assert (op["action"], op["channel"]) == ("send", {"$ref": "#/channels/connection"})
    assert op["description"] == "One item by id."
    [request] = messages(document, "get_item")
    assert request["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/Ref"}
    assert request["payload"]["required"] == ["type", "data"]
    reply, error = messages(document, "get_item:reply")
    assert reply["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/Item"}
    codes = error["payload"]["properties"]["error"]["properties"]["code"]["anyOf"]
    assert {"const": "not_found", "description": "no item has this id"} in codes
    assert {c.get("const") for c in codes} >= {"invalid_data", "internal_error", "timeout"}
    assert "broker_unavailable" not in {c.get("const") for c in codes}
    # Route options as extensions.
    assert op["x-wsroute-timeout"] == 5
    assert (op["x-wsroute-coalesce"], op["x-wsroute-coalesce-timeout"]) == (True, 2)
    assert op["x-wsroute-errors"] == {"not_found": "no item has this id"}


def test_a_broadcast_publishes_its_event_on_its_topic_channel(features: Any) -> None:
    document = asyncapi(features.app)
    op = document["operations"]["create_item"]
    assert op["x-wsroute-kind"] == "broadcast" and op["x-wsroute-topic"] == "items"
    assert op["x-wsroute-publishes"] == "topic.items"
    channel = document["channels"]["topic.items"]
    assert channel["address"] == "items"
    event = channel["messages"]["create_item"]["payload"]
    assert event["properties"]["topic"] == {"type": "string", "const": "items"}
    assert event["properties"]["data"] == {"$ref": "#/components/schemas/Item"}
    receive = document["operations"]["receive.create_item.topic.items"]
    assert receive["action"] == "receive"
    _, error = messages(document, "create_item:reply")
    code = error["payload"]["properties"]["error"]["properties"]["code"]
    assert {"duplicate", "broker_unavailable"} <= {c.get("const") for c in code["anyOf"]}


def test_topic_functions_and_templates_are_channels_with_parameters(features: Any) -> None:
    document = asyncapi(features.app)
    channels = document["channels"]
    # "say" picks its topic with a function; the event "said" declares the template
    # room:{room}, but only an event of the route's own name names its channel.
    say = channels[document["operations"]["say"]["x-wsroute-publishes"]]
    assert say["address"] == "{topic}"
    assert list(say["parameters"]) == ["topic"]
    assert say["x-wsroute-topic-function"].endswith(".room_of")
    assert "The sender's room." in say["description"]
    room = channels["topic.room.room"]
    assert room["address"] == "room:{room}" and set(room["parameters"]) == {"room"}
    said = room["messages"]["said"]["payload"]["properties"]["topic"]
    assert said == {"type": "string", "pattern": "^room:[\\s\\S]*$"}
    # A lambda gets a channel too, described by its name.
    shout = channels[document["operations"]["shout"]["x-wsroute-publishes"]]
    assert shout["address"] == "{topic}" and "<lambda>" in shout["x-wsroute-topic-function"]


@attrs.frozen
class Line:
    text: str


class Opaque:
    """A type read by a hook of the app's own: no schema can say what it takes."""


def test_a_declared_template_names_the_channel_of_a_topic_function() -> None:
    app = App(default_topic=None)
    app.declare_event("say", Line, topic="room:{room}")

    @app.broadcast("say", topic=lambda payload, conn: f"room:{conn.state.room}")
    async def say(text: str) -> Line:
        return Line(text)

    document = asyncapi(app)
    channel = document["operations"]["say"]["x-wsroute-publishes"]
    assert document["channels"][channel]["address"] == "room:{room}"
    assert list(document["channels"][channel]["messages"]) == ["say"]


def test_a_type_with_a_direct_and_a_broadcast_handler_has_two_operations(
    features: Any,
) -> None:
    document = asyncapi(features.app)
    assert document["operations"]["item.direct"]["x-wsroute-kind"] == "direct"
    broadcast = document["operations"]["item.broadcast"]
    assert broadcast["x-wsroute-exclude-sender"] is True
    # The event's data leaves out the null that publishes nothing; the reply keeps it.
    event = document["channels"]["topic.items"]["messages"]["item"]["payload"]
    assert event["properties"]["data"] == {"$ref": "#/components/schemas/Item"}
    reply, _ = messages(document, "item.broadcast:reply")
    assert {"type": "null"} in reply["payload"]["properties"]["data"]["anyOf"]


def test_requests_say_when_data_may_be_left_out(features: Any) -> None:
    document = asyncapi(features.app)
    required = {
        name: messages(document, name)[0]["payload"]["required"]
        for name in ("page", "echo", "ping", "get_item")
    }
    assert required == {
        "page": ["type"],  # a default
        "echo": ["type"],  # Any: null is a value
        "ping": ["type"],  # no payload
        "get_item": ["type", "data"],
    }
    [ping] = messages(document, "ping")
    assert ping["payload"]["properties"]["data"]["type"] == "null"


def test_odd_message_types_get_valid_ids_and_keep_their_names(features: Any) -> None:
    document = asyncapi(features.app)
    name = "a strange/type: é"
    [key] = [k for k, op in document["operations"].items() if op.get("title") == name]
    assert key == "a_strange.type.__"
    [request] = messages(document, key)
    assert request["name"] == name
    assert request["payload"]["properties"]["type"]["const"] == name


def test_pushed_and_protocol_events_are_received_on_the_connection(features: Any) -> None:
    document = asyncapi(features.app)
    connection = document["channels"]["connection"]["messages"]
    welcome = connection["welcome.event"]
    assert welcome["description"] == "Sent as a connection opens."
    assert "topic" not in welcome["payload"]["properties"]
    for name in ("broker_state", "wsroute.recovery", "wsroute.join", "wsroute.leave"):
        assert f"{name}.event" in connection, name
    assert document["operations"]["receive.wsroute.join.event.connection"]["action"] == "receive"
    topic = connection["wsroute.join.event"]["payload"]["properties"]["topic"]
    assert topic == {"type": "string", "pattern": "^(?:room:[\\s\\S]*)$"}
    for name in ("wsroute.presence", "wsroute.presence_stats"):
        assert document["operations"][name]["action"] == "send"
    unreadable = connection["wsroute.error"]["payload"]
    assert unreadable["properties"]["type"]["const"] == "error"
    assert "id" not in unreadable["properties"]


def test_bearer_auth_is_a_pair_of_security_schemes(features: Any) -> None:
    document = asyncapi(features.app)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerHeader"]["type"] == "http"
    assert schemes["bearerHeader"]["scheme"] == "bearer"
    assert (schemes["bearerQuery"]["in"], schemes["bearerQuery"]["name"]) == ("query", "token")
    server = document["servers"]["default"]
    assert server["security"] == [
        {"$ref": "#/components/securitySchemes/bearerHeader"},
        {"$ref": "#/components/securitySchemes/bearerQuery"},
    ]
    binding = document["channels"]["connection"]["bindings"]["ws"]
    assert set(binding["query"]["properties"]) == {"token", "wsroute.recover"}
    assert "Authorization" in binding["headers"]["properties"]
    # Header only:
    app = App()
    app.accept(bearer_auth(lambda token: token, query_param=None))
    document = asyncapi(app)
    assert list(document["components"]["securitySchemes"]) == ["bearerHeader"]


def test_another_accept_hook_is_named_not_guessed() -> None:
    app = App()

    @app.accept
    async def who(request: Any) -> str:
        """Anyone with a ?user= parameter."""
        return "x"

    document = asyncapi(app)
    server = document["servers"]["default"]
    assert "securitySchemes" not in document["components"] and "security" not in server
    assert server["x-wsroute-accept-hook"].endswith("who")
    assert "Anyone with a ?user= parameter." in server["description"]
    assert "security" not in asyncapi(App())["servers"]["default"]


def test_msgpack_is_named_where_the_app_speaks_it(features: Any) -> None:
    server = asyncapi(features.app)["servers"]["default"]
    assert server["x-wsroute-subprotocols"] == {
        "wsroute.v1.json": "application/json",
        "wsroute.v1.msgpack": "application/msgpack",
    }
    assert "msgpack" in server["description"]
    server = asyncapi(App(subprotocols=["wsroute.v1.json"]))["servers"]["default"]
    assert server["x-wsroute-subprotocols"] == {"wsroute.v1.json": "application/json"}
    assert "msgpack" not in server["description"]


def test_info_and_server_come_from_the_options(features: Any) -> None:
    document = asyncapi(
        features.app, title="Items", version="2.1", server="wss://api.example.com/ws"
    )
    assert (document["asyncapi"], document["info"]["title"]) == ("3.0.0", "Items")
    assert document["info"]["version"] == "2.1"
    server = document["servers"]["default"]
    assert (server["host"], server["protocol"], server["pathname"]) == (
        "api.example.com",
        "wss",
        "/ws",
    )
    assert "Up to 4 requests" in document["info"]["description"]
    with pytest.raises(ValueError, match="ws:// or wss://"):
        asyncapi(features.app, server="http://example.com/")


def test_tuples_are_written_the_way_asyncapi_reads_them(features: Any) -> None:
    document = asyncapi(features.app)
    where = document["components"]["schemas"]["CreateItem"]["properties"]["where"]
    assert "prefixItems" not in json.dumps(document)
    assert where["items"] == [{"type": "number"}, {"type": "number"}]
    assert where["additionalItems"] is False


def test_a_type_without_a_schema_is_an_error_naming_the_route() -> None:
    app = App()
    app.converter.register_structure_hook(Opaque, lambda value, _: Opaque())

    @app.direct("take")
    async def take(thing: Opaque) -> None:
        pass

    with pytest.raises(SchemaError, match="'take'"):
        asyncapi(app)


def test_yaml_reads_back_as_the_json(features: Any) -> None:
    assert yaml.safe_load(asyncapi_yaml(features.app)) == json.loads(asyncapi_json(features.app))


# -- real frames against the document --------------------------------------------------


def receivable(document: dict[str, Any]) -> list[jsonschema.Draft7Validator]:
    """A validator per message a client may receive: replies and received events."""
    found = []
    for key, op in document["operations"].items():
        found += messages(document, f"{key}:reply") if op["action"] == "send" else []
        found += messages(document, key) if op["action"] == "receive" else []
    root = {"components": document["components"]}
    return [jsonschema.Draft7Validator({**m["payload"], **root}) for m in found]


def request_validator(document: dict[str, Any], operation: str) -> jsonschema.Draft7Validator:
    [request] = messages(document, operation)
    return jsonschema.Draft7Validator({**request["payload"], "components": document["components"]})


async def test_every_frame_a_server_sends_is_a_message_of_its_document(
    features: Any, serve: Any
) -> None:
    app = features.app
    document = asyncapi(app)
    validators = receivable(document)
    port = await serve(app)
    frames: list[Any] = []
    headers = {"Authorization": "Bearer user-ada"}
    async with connect(port, additional_headers=headers, subprotocols=["wsroute.v1.json"]) as ws:
        sent = [
            {"type": "create_item", "id": 1, "data": {"name": "a", "size": "s", "where": [1, 2]}},
            {"type": "create_item", "id": "two", "data": {"name": "a", "size": "s"}},
            {"type": "get_item", "id": 3, "data": {"id": 1}},
            {"type": "get_item", "id": 4, "data": {"id": 99}},
            {"type": "item", "id": 5, "data": {"id": 1}},
            {"type": "join", "id": 6, "data": {"room": "r"}},
            {"type": "say", "id": 7, "data": "hi"},
            {"type": "page", "id": 8},
            {"type": "echo", "id": 9, "data": [1, {"x": None}]},
            {"type": "ping", "id": 10},
            {"type": "wsroute.presence", "id": 11, "data": {"topic": "room:r"}},
            {"type": "wsroute.presence_stats", "id": 12, "data": {"topic": "room:r"}},
            {"type": "a strange/type: é", "id": 13, "data": None},
            {"type": "get_item", "id": 14, "data": {"id": "x"}},
            {"type": "no_such_type", "id": 15},
            {"type": "page", "id": 16, "colour": "red"},
        ]
        for message in sent:
            await ws.send(message)
        # Replies to every request (two carry errors), plus welcome, the events of
        # create_item, say and join's presence.
        with trio.fail_after(10):
            while sum(1 for f in frames if "ok" in f) < len(sent):
                frames.append(await ws.recv())
        await ws.send("{oops")
        frames.append(await ws.recv())
    types = {(f["type"], f.get("ok")) for f in frames}
    assert {
        ("welcome", None),
        ("create_item", None),
        ("say", None),
        ("wsroute.join", None),
    } <= types
    assert ("error", False) in types and ("get_item", False) in types
    assert {("no_such_type", False), ("page", False)} <= types
    for frame in frames:
        valid = [v for v in validators if v.is_valid(frame)]
        assert valid, f"no message of the document matches {frame}"


def test_the_envelope_refuses_what_the_server_refuses(features: Any) -> None:
    document = asyncapi(features.app)
    get_item = request_validator(document, "get_item")
    ping = request_validator(document, "ping")
    assert get_item.is_valid({"type": "get_item", "id": 2**53, "data": {"id": 1}})
    assert get_item.is_valid({"type": "get_item", "id": "x" * 64, "data": {"id": 1}})
    for bad in (
        {"type": "get_item", "id": True, "data": {"id": 1}},  # invalid_message
        {"type": "get_item", "id": 2**53 + 1, "data": {"id": 1}},  # invalid_message
        {"type": "get_item", "id": "x" * 65, "data": {"id": 1}},  # invalid_message
        {"type": "get_item", "data": {"id": 1}, "extra": 1},  # invalid_message
        {"type": "get_item", "data": {"id": "1"}},  # invalid_data
        {"type": "get_item"},  # invalid_data
        {"type": "ping", "data": 1},  # invalid_data: takes no data
    ):
        validator = ping if bad["type"] == "ping" else get_item
        assert not validator.is_valid(bad), bad


# -- served and written ----------------------------------------------------------------


async def test_the_app_serves_its_document(features: Any, serve: Any) -> None:
    port = await serve(features.app)
    request = b"GET /asyncapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = await http_exchange(port, request)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == asyncapi(features.app)


async def test_a_document_that_cannot_be_made_stops_the_start(nursery: trio.Nursery) -> None:
    app = App(asyncapi="/asyncapi.json")
    app.converter.register_structure_hook(Opaque, lambda value, _: Opaque())

    @app.direct("take")
    async def take(thing: Opaque, conn: Connection) -> None:
        pass

    with pytest.raises(SchemaError, match=r"'take'.* takes no overrides: serve wsroute"):
        await nursery.start(app.serve, "127.0.0.1", 0)


async def test_run_says_in_one_line_why_the_document_cannot_be_served(tmp_path: Path) -> None:
    (tmp_path / "served.py").write_text(
        "from wsroute import App\n"
        "app = App(asyncapi='/asyncapi.json')\n"
        "class Opaque: ...\n"
        "app.converter.register_structure_hook(Opaque, lambda v, _: Opaque())\n"
        "@app.direct('take')\n"
        "async def take(thing: Opaque) -> None: ...\n"
    )
    done = await wsroute_cli("run", "served:app", "--port", "0", "--app-dir", str(tmp_path))
    assert_one_line_error(done, 1, "cannot serve App(asyncapi=...)", "'take'", "GET route")


async def test_the_command_writes_json_or_yaml(tmp_path: Path) -> None:
    items = str(REPO / "examples" / "items")
    done = await wsroute_cli("asyncapi", "app:app", "--app-dir", items)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["info"]["title"], document["info"]["version"]) == ("app:app", "0.1.0")
    out = tmp_path / "api.yaml"
    done = await wsroute_cli(
        "asyncapi", "app:app", "--app-dir", items, "--format", "yaml", "-o", str(out),
        "--title", "Items", "--api-version", "3", "--server", "wss://x.example/ws",
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "")
    written = yaml.safe_load(out.read_text())
    assert written["info"] == {**document["info"], "title": "Items", "version": "3"}
    assert written["servers"]["default"]["host"] == "x.example"


async def test_the_command_says_what_went_wrong(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from wsroute import App\n"
        "app = App()\n"
        "class Opaque: ...\n"
        "app.converter.register_structure_hook(Opaque, lambda v, _: Opaque())\n"
        "@app.direct('take')\n"
        "async def take(thing: Opaque) -> None: ...\n"
    )
    done = await wsroute_cli("asyncapi", "bad:app", "--app-dir", str(tmp_path))
    assert_one_line_error(done, 1, "cannot make the contract", "'take'")
    assert done.stdout == ""
    done = await wsroute_cli("asyncapi", "bad:app", "--format", "xml")
    assert done.returncode == 2 and "expected json or yaml" in done.stderr
    done = await wsroute_cli("asyncapi", "bad:app", "--server", "http://x/")
    assert done.returncode == 2 and "ws:// or wss://" in done.stderr
    items = str(REPO / "examples" / "items")
    done = await wsroute_cli("asyncapi", "app:app", "--app-dir", items, "-o", str(tmp_path))
    assert_one_line_error(done, 1, f"cannot write {tmp_path}")


HOOKED = (
    "import uuid\n"
    "from wsroute import App\n"
    "app = App()\n"
    "app.converter.register_structure_hook(uuid.UUID, lambda v, _: uuid.UUID(v))\n"
    "app.converter.register_unstructure_hook(uuid.UUID, str)\n"
    "@app.direct('take')\n"
    "async def take(thing: uuid.UUID) -> None: ...\n"
    "schemas = {uuid.UUID: {'type': 'string', 'format': 'uuid'}}\n"
    "wrong = [uuid.UUID]\n"
)


async def test_the_command_takes_overrides(tmp_path: Path) -> None:
    (tmp_path / "hooked.py").write_text(HOOKED)
    at = ["--app-dir", str(tmp_path)]
    done = await wsroute_cli("asyncapi", "hooked:app", *at)
    # The error tells how to give the schema, on the command line too.
    assert_one_line_error(done, 1, "'take'", "overrides={type: schema}", "--overrides MODULE:ATTR")
    for form in ("json", "yaml"):
        done = await wsroute_cli(
            "asyncapi", "hooked:app", *at, "--overrides", "hooked:schemas", "--format", form
        )
        assert done.returncode == 0, done.stderr
        document = yaml.safe_load(done.stdout)  # JSON is YAML
        request = document["channels"]["connection"]["messages"]["take.request"]["payload"]
        assert request["properties"]["data"] == {"type": "string", "format": "uuid"}
    done = await wsroute_cli("asyncapi", "hooked:app", *at, "--overrides", "hooked:wrong")
    assert_one_line_error(done, 2, "--overrides 'hooked:wrong' is a list, not a dict of types")
    done = await wsroute_cli("asyncapi", "hooked:app", *at, "--overrides", "hooked:missing")
    assert_one_line_error(done, 2, "--overrides 'hooked:missing': 'hooked' has no attribute")


def test_an_app_with_a_frame_handler_has_no_contract() -> None:
    app = App()

    @app.frame_handler
    async def echo(frame: str | bytes) -> str | bytes:
        return frame

    with pytest.raises(ValueError, match="frame handler"):
        asyncapi(app)
    with pytest.raises(ValueError, match="frame handler"):
        typescript(app)
    with pytest.raises(RegistrationError, match=r"leave out App\(asyncapi=\.\.\.\)"):
        App(asyncapi="/asyncapi.json").frame_handler(echo)
