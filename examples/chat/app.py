"""The chat example: rooms as topics, one room per connection at a time.

Run it with ``wsroute run app:app --app-dir examples/chat`` and open
``http://127.0.0.1:8000/`` in a browser: the app serves the page in ``static/``,
which uses the JavaScript client the app serves at ``/wsroute.js``. Or connect any
WebSocket client to ``ws://127.0.0.1:8000/?user=ada`` and send, for example::

    {"type": "join", "id": 1, "data": {"room": "lobby", "nick": "ada"}}
    {"type": "say", "data": {"text": "hello"}}
    {"type": "who", "id": 2}
    {"type": "whisper", "id": 3, "data": {"to": "bob", "text": "psst"}}
    {"type": "kick", "id": 4, "data": {"user": "bob", "reason": "spam"}}
    {"type": "leave", "id": 5}

Each room is the topic ``room:<name>``. Everyone in a room receives its ``say``
events and a ``joined``/``left`` event when somebody arrives or goes. There is no
default topic: a connection hears nothing until it joins a room.

A connection's user is the ``user`` query parameter: a stand-in for real
authentication (use ``bearer_auth`` or your own accept hook). Users get private
``whisper`` messages on all their connections, in every process; moderators can
``kick`` a user, which runs the ``kicked`` info handler inside each of that user's
connections, wherever they are.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from wsroute import App, Connection, HandlerError, Request

app = App(default_topic=None)
app.add_static("/", Path(__file__).parent / "static")  # the browser page

#: Users allowed to kick others.
MODERATORS = frozenset({"mod"})


@attrs.frozen
class Join:
    room: str
    nick: str


@attrs.frozen
class Say:
    text: str


@attrs.frozen
class Roster:
    """The reply to ``join`` and ``who``: a room and the nicks in it, in join order."""

    room: str
    nicks: list[str]


@attrs.frozen
class Line:
    """The event a ``say`` publishes to the room."""

    room: str
    nick: str
    text: str


@attrs.frozen
class Whisper:
    to: str
    text: str


@attrs.frozen
class Kick:
    user: str
    reason: str = ""


@attrs.frozen
class Presence:
    """Who arrived or went: the ``joined``/``left`` events and the ``leave`` reply."""

    room: str
    nick: str


# The events the app sends by itself, for its contracts (`wsroute asyncapi app:app`).
ROOM = "room:{room}"
app.declare_event("joined", Presence, topic=ROOM, description="Somebody joined the room.")
app.declare_event("left", Presence, topic=ROOM, description="Somebody left the room.")
app.declare_event("say", Line, topic=ROOM, description="What somebody said in the room.")
app.declare_event("whisper", dict[str, str], description="A private message: from, text.")
app.declare_event("kicked", dict[str, str], description="A moderator kicked you: by, reason.")
NOT_IN_ROOM = {"not_in_room": "join a room first"}
ANONYMOUS = {"anonymous": "connect with ?user=<name> to do this"}

#: Who is where: room name -> {connection id: nick}. Rooms disappear when empty.
rooms: dict[str, dict[str, str]] = {}


def room_topic(room: str) -> str:
    return f"room:{room}"


def current_room(conn: Connection) -> tuple[str, str]:
    """The connection's ``(room, nick)``, or the ``not_in_room`` error."""
    room: str | None = getattr(conn.state, "room", None)  # unset until the first join
    if room is None:
        raise HandlerError("not_in_room", "join a room first")
    return room, conn.state.nick


async def leave_room(conn: Connection) -> None:
    """Take ``conn`` out of its room, if any, and tell those who stay."""
    room: str | None = getattr(conn.state, "room", None)
    if room is None:
        return
    nick: str = conn.state.nick
    conn.state.room = conn.state.nick = None
    members = rooms.get(room, {})
    members.pop(conn.id, None)
    if not members:
        rooms.pop(room, None)
    await conn.unsubscribe(room_topic(room))  # first, so the leaver does not hear "left"
    await app.publish(room_topic(room), "left", Presence(room, nick))


@app.accept
async def identify(request: Request) -> str | None:
    """The user from ``?user=``; anonymous without it (see the module docstring)."""
    return request.query.get("user") or None


def require_user(conn: Connection) -> str:
    if conn.user_id is None:
        raise HandlerError("anonymous", "connect with ?user=<name> to do this")
    return conn.user_id


@app.on_disconnect
async def gone(conn: Connection) -> None:
    await leave_room(conn)


@app.direct("join", errors={"invalid_room": "room is blank", "invalid_nick": "nick is blank"})
async def join(msg: Join, conn: Connection) -> Roster:
    room, nick = msg.room.strip(), msg.nick.strip()
    if not room:
        raise HandlerError("invalid_room", "room must not be empty")
    if not nick:
        raise HandlerError("invalid_nick", "nick must not be empty")
    await leave_room(conn)
    conn.state.room, conn.state.nick = room, nick
    rooms.setdefault(room, {})[conn.id] = nick
    await conn.subscribe(room_topic(room))  # first, so the joiner hears its own "joined"
    await app.publish(room_topic(room), "joined", Presence(room, nick))
    return Roster(room, list(rooms[room].values()))


@app.broadcast("say", topic=lambda msg, conn: room_topic(conn.state.room), errors=NOT_IN_ROOM)
async def say(msg: Say, conn: Connection) -> Line:
    room, nick = current_room(conn)
    return Line(room, nick, msg.text)  # published to the room's topic


@app.direct("leave", errors=NOT_IN_ROOM)
async def leave(conn: Connection) -> Presence:
    room, nick = current_room(conn)
    await leave_room(conn)
    return Presence(room, nick)


@app.direct("who", errors=NOT_IN_ROOM)
async def who(conn: Connection) -> Roster:
    room, _ = current_room(conn)
    return Roster(room, list(rooms[room].values()))


@app.direct("whisper", errors=ANONYMOUS)
async def whisper(msg: Whisper, conn: Connection) -> Whisper:
    """A private message to every connection of user ``to``, in any process."""
    sender = require_user(conn)
    await app.send_to_user(msg.to, "whisper", {"from": sender, "text": msg.text})
    return msg


@app.direct("kick", errors={**ANONYMOUS, "forbidden": "only moderators can kick"})
async def kick(msg: Kick, conn: Connection) -> Kick:
    if require_user(conn) not in MODERATORS:
        raise HandlerError("forbidden", "only moderators can kick")
    await app.tell_user(msg.user, "kicked", {"by": conn.user_id, "reason": msg.reason})
    return msg


@app.info("kicked")
async def kicked(order: dict[str, str], conn: Connection) -> None:
    """Runs inside each connection of the kicked user: leave, tell them, close."""
    await leave_room(conn)
    await conn.send("kicked", order)
    await conn.close(4003, order.get("reason") or "kicked")
