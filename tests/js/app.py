"""The apps the JavaScript client's Node tests talk to (tests/js/*.test.mjs).

The tests run one as a real process, ``python -m wsroute run app:app --app-dir tests/js``
(or ``app:json_only``, ``app:recovering``), so that they can kill and restart it. Every
connection needs a bearer token ``secret:<user>`` (header or ``?token=``); each test uses
its own user, so the per-user request log that ``history`` returns is the test's alone.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import msgpack
import trio

from wsroute import App, Connection, HandlerError, History, bearer_auth

# Several handlers at once per connection: replies then come out of order, as the
# client must cope with, and a slow handler does not hold up a test's other requests.
app = App(default_topic=None, max_concurrency=16, max_queued_requests=2048, outbox_size=4096)

TOKEN_PREFIX = "secret:"


def user_of(token: str) -> str | None:
    """The user a token stands for; ``None`` refuses it (401)."""
    user = token.removeprefix(TOKEN_PREFIX)
    return user if token.startswith(TOKEN_PREFIX) and user else None


app.accept(bearer_auth(user_of))

#: Each user's requests as ``[type, data]``, in the order handled: lets a test see
#: what a (re)connected client sent and in which order.
log: dict[str, list[list[Any]]] = {}
#: Rooms whose ``join`` now fails ("refuse") or answers only after a second ("stall",
#: longer than the tests' request timeout; not longer, as a closing connection waits
#: for its handlers in flight).
closed_rooms: dict[str, str] = {}


def note(conn: Connection, type: str, data: Any = None) -> None:
    log.setdefault(conn.user, []).append([type, data])


@attrs.frozen
class Room:
    room: str


@attrs.frozen
class CloseRoom:
    room: str
    how: Literal["refuse", "stall"] = "refuse"


@attrs.frozen
class Say:
    room: str
    text: str


@attrs.frozen
class Said:
    room: str
    text: str
    by: str


@attrs.frozen
class Kick:
    code: int
    reason: str = ""


@app.direct("echo")
async def echo(data: Any, conn: Connection) -> Any:
    note(conn, "echo", data)
    return data


@app.direct("whoami")
async def whoami(conn: Connection) -> str:
    return str(conn.user)


@app.direct("history")
async def history(conn: Connection) -> list[list[Any]]:
    return log.get(conn.user, [])


@app.direct("join")
async def join(msg: Room, conn: Connection) -> Room:
    """Subscribe the connection to ``room:<room>``: what a reconnect must replay."""
    note(conn, "join", msg.room)
    how = closed_rooms.get(msg.room)
    if how == "refuse":
        raise HandlerError("room_closed", f"room {msg.room} is closed", {"room": msg.room})
    if how == "stall":
        await trio.sleep(1)
    await conn.subscribe(f"room:{msg.room}")
    return msg


@app.direct("close_room")
async def close_room(msg: CloseRoom) -> None:
    closed_rooms[msg.room] = msg.how


@app.broadcast("say", topic=lambda msg, conn: f"room:{msg.room}")
async def say(msg: Say, conn: Connection) -> Said:
    return Said(msg.room, msg.text, str(conn.user))


@app.direct("notify")
async def notify(data: Any, conn: Connection) -> None:
    """Push ``data`` back as a ``note`` event without a topic."""
    await conn.send("note", data)


@app.direct("fail")
async def fail() -> None:
    raise HandlerError("not_found", "no such thing", {"id": 42})


@app.direct("slow")
async def slow(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


@app.direct("big")
async def big() -> str:
    return "x" * (1024 * 1024)


@app.direct("kick")
async def kick(msg: Kick, conn: Connection) -> None:
    """Close this connection with the given code, after the reply."""
    await conn.close(msg.code, msg.reason)


@app.direct("bad_frames")
async def bad_frames(conn: Connection) -> str:
    """Frames a client must log and drop, each queued before this reply."""
    await conn.send_frame("this is not JSON")
    await conn.send_frame(b"\x00\x01 binary")
    await conn.send_frame("[1, 2, 3]")
    await conn.send_frame('{"type": "x", "id": 999999, "ok": true, "data": null}')
    await conn.send_frame(
        '{"type": "error", "ok": false, "error": {"code": "invalid_json", "message": "bad"}}'
    )
    await conn.send_frame('{"data": "an event without a type"}')
    return "sent"


@app.direct("subprotocol")
async def subprotocol(conn: Connection) -> str | None:
    """The subprotocol the server selected: its messages are msgpack exactly when
    this is ``wsroute.v1.msgpack``."""
    return conn.subprotocol


@app.direct("kinds")
async def kinds(data: dict[str, Any]) -> dict[str, str]:
    """The Python type of each value of ``data``: what a handler receives."""
    return {key: type(value).__name__ for key, value in data.items()}


@attrs.frozen
class Upload:
    name: str
    content: bytes


@app.direct("upload")
async def upload(msg: Upload) -> Upload:
    """A typed ``bytes`` field: msgpack binary, or base64 text from a JSON client."""
    return msg


@attrs.frozen
class Share:
    room: str
    content: bytes


@app.broadcast("share", topic=lambda msg, conn: f"room:{msg.room}")
async def share(msg: Share) -> Share:
    """An event holding ``bytes``: binary to msgpack subscribers, base64 to JSON ones."""
    return msg


@app.direct("bad_binary_frames")
async def bad_binary_frames(conn: Connection) -> str:
    """Frames a msgpack client must log and drop, each queued before this reply."""
    await conn.send_frame("a text frame")
    await conn.send_frame(b"\xc1 is never msgpack")
    await conn.send_frame(msgpack.packb([1, 2, 3]))
    await conn.send_frame(msgpack.packb({"type": "x", "id": 999999, "ok": True, "data": b"\x01"}))
    await conn.send_frame(msgpack.packb({"data": "an event without a type"}))
    return "sent"


#: The same handlers on an app that speaks JSON only: a client that offers msgpack
#: meets what an older server, or one that prefers another subprotocol, does.
json_only = App(default_topic=None, subprotocols=["wsroute.v1.json"])
json_only.accept(bearer_auth(user_of))
for _name, _handler in [
    ("echo", echo),
    ("subprotocol", subprotocol),
    ("kinds", kinds),
    ("upload", upload),
]:
    json_only.direct(_name)(_handler)


#: An app that keeps history, for recovery (resume.test.mjs): ``room:*`` keeps plenty,
#: ``tiny:*`` only its last 3 events (a client away for longer cannot recover), and
#: other topics none. Its memory broker forgets everything when the process restarts.
recovering = App(
    default_topic=None,
    history={"room:*": History(size=1000, ttl=300), "tiny:*": History(size=3, ttl=300)},
    outbox_size=4096,
)
recovering.accept(bearer_auth(user_of))
recovering.direct("kick")(kick)
recovering.direct("echo")(echo)


@attrs.frozen
class Publish:
    topic: str
    count: int
    first: int = 1


@recovering.direct("subscribe")
async def subscribe(topic: str, conn: Connection) -> str:
    """Subscribe the connection to ``topic``: what a reconnect replays, and what
    recovers the topic when the client presented a position for it."""
    await conn.subscribe(topic)
    return topic


@recovering.direct("publish")
async def publish(msg: Publish) -> None:
    """Publish ``count`` ``tick`` events to ``topic``, with data ``first``, ``first + 1``, ..."""
    for n in range(msg.first, msg.first + msg.count):
        await recovering.publish(msg.topic, "tick", n)


@recovering.direct("query")
async def query(conn: Connection) -> dict[str, str]:
    """The query parameters of this connection's upgrade request."""
    return dict(conn.request.query)
