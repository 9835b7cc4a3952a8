"""What waits in a Redis session's queue for the publisher (``publisher.py``): publishes,
and calls of Lua scripts (history, ``kept.py``), each with the command that sends it
and the event its caller waits on.

A script is sent by its SHA1 (``EVALSHA``); the publisher loads it on each new
connection first (``SCRIPT LOAD``) and falls back to sending its text (``EVAL``). An
item a cluster node redirected with ``ASK`` goes once more, marked ``asking``: the
publisher sends ``ASKING`` right before it. A call of a script naming several keys
says how to make them there should that node lack some (``blanks.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, TypeAlias

import trio
from coredis.commands import CommandRequest


class Command(CommandRequest[Any]):
    """A command of a publisher's pipeline, as ``create_request_batch`` writes it: its
    name and its arguments, already bytes (or ints). Building coredis's own request
    works out routing, flags and key types for each command (1.7 µs for a
    ``PUBLISH``, 3 µs for a script call, against 0.3 and 0.5 µs here); a pipeline of
    publishes and script calls needs none of it. The reply is Redis's, raw."""

    def __init__(self, name: bytes, *arguments: bytes | int) -> None:
        # Not CommandRequest.__init__: only what a connection reads of a request.
        self.name = name
        self.arguments = arguments
        self.serialized_arguments = arguments
        self.execution_parameters = {}
        self.decode = None
        self.noreply = False
        self.blocking = False
        self.readonly = False
        self.routing_strategy = None
        self.resolver = None
        self.kwargs = {}


class Pending:
    """One publish waiting for Redis; its caller waits on ``done``."""

    __slots__ = ("abandoned", "asking", "channel", "data", "done", "error", "size")

    def __init__(self, channel: bytes, data: bytes) -> None:
        self.channel = channel
        self.data = data
        #: Roughly how many bytes it adds to a pipeline.
        self.size = len(data)
        self.done = trio.Event()
        self.error: BaseException | None = None
        #: The caller gave up (timeout or cancellation): do not publish it late.
        self.abandoned = False
        #: Sent right after an ``ASKING``, on the same connection: a cluster node named
        #: it in an ``ASK`` redirection (its slot is being imported there).
        self.asking = False

    def finish(self, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()

    def request(self, verb: bytes = b"PUBLISH") -> CommandRequest[Any]:
        """Its ``PUBLISH`` (or ``verb``: ``SPUBLISH``)."""
        return Command(verb, self.channel, self.data)

    def again(self) -> Pending:
        """A fresh copy, to send once more (after Redis redirected it, unsent)."""
        return Pending(self.channel, self.data)

    def asked(self) -> Pending:
        """A fresh copy for the node an ``ASK`` named: sent once, after ``ASKING``."""
        copy = self.again()
        copy.asking = True
        return copy


class Script:
    """A Lua script, run by its SHA1 (``EVALSHA``) so that its text crosses the
    network once per connection rather than once per call."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()

    def load(self) -> CommandRequest[Any]:
        """``SCRIPT LOAD`` of this script, so that ``EVALSHA`` finds it."""
        return CommandRequest(b"SCRIPT LOAD", self.source, execution_parameters={})


def asking() -> CommandRequest[Any]:
    """``ASKING``: the next command on the connection, only that one, may touch a slot
    the node is importing."""
    return CommandRequest(b"ASKING", execution_parameters={})


#: How to make one of a call's keys blank on a cluster node importing its slot
#: (``blanks.py``): the key, its kind and its expiry in ms.
Blank: TypeAlias = tuple[bytes, bytes, bytes]


class Call(Pending):
    """One run of a :class:`Script` waiting for Redis, in line with the publishes;
    Redis' answer lands in ``reply`` (its error in ``error``)."""

    __slots__ = ("args", "blanks", "keys", "reply", "script")

    def __init__(
        self,
        script: Script,
        keys: Sequence[bytes],
        args: Sequence[bytes],
        size: int | None = None,
        blanks: Sequence[Blank] = (),
    ) -> None:
        """``size``: roughly the bytes the call adds to a pipeline, when the caller
        knows it (the data it carries) better than by summing ``args``. ``blanks``:
        how to make its keys on a node importing their slot, for a script naming
        several (``blanks.py``)."""
        super().__init__(b"", b"")
        self.script = script
        self.keys = keys
        self.args = args
        self.size = sum(map(len, args)) if size is None else size
        self.blanks = blanks
        self.reply: object = None

    def again(self) -> Call:
        return Call(self.script, self.keys, self.args, self.size, self.blanks)

    def evaluate(self, *, loaded: bool) -> CommandRequest[Any]:
        """``EVALSHA`` once the script is ``loaded`` on the connection, else ``EVAL``."""
        script = self.script
        name, body = (b"EVALSHA", script.sha) if loaded else (b"EVAL", script.source)
        return Command(name, body, len(self.keys), *self.keys, *self.args)
