"""Presence on a Redis Cluster: the layout of ``present.py`` cut so that every script
touches one slot, at the price of steps that are no longer one atomic script.

**Keys.** For a prefix ``<prefix>``:

- ``<prefix>{<topic>}:p``, the topic's entries, with their leave events, as on one
  Redis (field ``<n>:<node>:<member>``, value ``present.packed``);
- ``<prefix>{<topic>}:pn``, a sorted set of the nodes with entries on the topic, each
  scored by the end of its heartbeat (Redis' clock, ms): the topic's own copy of the
  nodes' liveness, in the topic's slot, so that listing is one script there;
- ``<prefix>presence:nodes``, every node by the end of its heartbeat, as on one Redis:
  it says whether a node was alive until its beat, and which nodes died;
- ``<prefix>presence:node:<node>``, the topics where the node has entries, for the
  sweeper. Only the node's own session adds to it, before adding an entry there. Its
  field ``""`` (no topic is empty) holds a sweeper's claim on the dead node:
  ``<end of the lease, ms>:<the sweeper's token>``.

**Steps.** A heartbeat renews the node in the nodes' set, then its copy on every topic
where its session added entries (one script per topic, pipelined per shard); an entry
is added with the end of its node's last beat.

A sweep is resumable: each step is one script, and a sweeper that stops between any
two leaves what it has not done for the next one. It reads the dead nodes from the
nodes' set; claims each in its index, for a lease of ``SWEEP_LEASE`` times the
session's ``publish_timeout`` (a node whose claim is another's live lease is skipped);
then per topic of the index, removes the node's entries there (one script, returned to
this sweeper only), only where the topic's copy says it is still dead (a node that
came back and beat again keeps them), and drops the topic from the index, renewing
the lease. Last it drops its claim (the index goes with its last field) and forgets
the node in the nodes' set (unless it beat again). A sweeper that dies leaves its lease
to run out; the next sweep takes the claim over and finds the topics not yet swept.
Entries are removed by one atomic script each time, which publishes their leave
events (``SPUBLISH`` on the topic's channel ``<prefix>{<topic>}``, in the slot of its
keys), so none is returned or announced twice, and none that a sweeper removed before
it died goes unannounced. Adding and removing an entry publish its events the same
way. Key expiry is ``present.KEEP_FACTOR`` times the ttl, as on one Redis.

After an ``ASK`` (the topic's slot is moving) a script runs on the node importing the
slot, whose ``SPUBLISH`` would not reach the subscribers, still on the old owner until
the migration ends: sent so (``EventCall.asked``), a script publishes nothing and
returns the events it would have published, which the session publishes on the
owner, as it does a kept event (``kept.KeptCall``). Only then are an entry's change and
its event two steps. A script naming both of a topic's keys, one of which that node
lacks (a topic new to both nodes), is refused there (``TRYAGAIN``) until the session
makes its missing keys blank (``blanks.py``): a hash with the field ``""``, which
listing skips and adding an entry drops, a sorted set with the member ``""``.

The scripts are in ``present_sharded_scripts.py``; this module makes their calls and
reads their replies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from . import blanks
from .pending import Blank, Call, Script
from .present import (
    entries_of,
    event_arg,
    field,
    keep_ms,
    node_key,
    nodes_key,
    packed,
    topic_key,
)
from .present_sharded_scripts import (
    ADD,
    BEAT,
    BEAT_TOPIC,
    CLAIM,
    DEAD,
    FORGET,
    INDEX,
    LIST,
    RELEASE,
    REMOVE,
    SWEEP_TOPIC,
    SWEPT,
)

#: A sweeper's claim on a dead node lasts this many times its ``publish_timeout`` (the
#: longest one step may take), renewed at each topic swept.
SWEEP_LEASE: Final = 3


def nodes_of(prefix: bytes, topic: str) -> bytes:
    """The topic's copy of its nodes' liveness."""
    return topic_key(prefix, topic) + b"n"


class EventCall(Call):
    """A call of a script that publishes presence events on the channel in its
    argument ``at``. Sent after an ``ASK``, to the node importing the topic's slot,
    it is given no channel: it returns the events instead (see the module's doc)."""

    __slots__ = ("at",)

    def __init__(
        self,
        script: Script,
        keys: Sequence[bytes],
        args: Sequence[bytes],
        at: int,
        blanks: Sequence[Blank] = (),
    ) -> None:
        super().__init__(script, keys, args, blanks=blanks)
        self.at = at

    def again(self) -> EventCall:
        return EventCall(self.script, list(self.keys), list(self.args), self.at, self.blanks)

    def asked(self) -> EventCall:
        args = list(self.args)
        args[self.at] = b""
        copy = EventCall(self.script, list(self.keys), args, self.at, self.blanks)
        copy.asking = True
        return copy


def channel(prefix: bytes, topic: str) -> bytes:
    """The topic's channel: its hash tag puts it in the slot of the topic's keys."""
    return b"%s{%s}" % (prefix, topic.encode())


def add_call(
    prefix: bytes,
    topic: str,
    member: str,
    node: str,
    entry: bytes,
    end: bytes,
    ttl: float,
    join: bytes | None = None,
    leave: bytes | None = None,
) -> Call:
    entries, nodes, keep = topic_key(prefix, topic), nodes_of(prefix, topic), keep_ms(ttl)
    args = [field(node, member), packed(entry, leave), node.encode(), end, keep]
    args += [channel(prefix, topic), event_arg(join)]
    return EventCall(ADD, [entries, nodes], args, 5, blanks.presence(entries, nodes, keep))


def remove_call(prefix: bytes, topic: str, member: str, node: str) -> Call:
    keys = [topic_key(prefix, topic)]
    return EventCall(REMOVE, keys, [field(node, member), channel(prefix, topic)], 1)


def list_call(prefix: bytes, topic: str, ttl: float) -> Call:
    """Keys made blank for it (``blanks.py``) live as if added with ``ttl``."""
    entries, nodes = topic_key(prefix, topic), nodes_of(prefix, topic)
    return Call(LIST, [entries, nodes], [], blanks=blanks.presence(entries, nodes, keep_ms(ttl)))


def beat_call(prefix: bytes, node: str, ttl: float, keep: float) -> Call:
    return Call(BEAT, [nodes_key(prefix)], [node.encode(), _ms(ttl), keep_ms(keep)])


def beat_topic_call(prefix: bytes, topic: str, node: str, end: bytes, keep: float) -> Call:
    entries, nodes, ms = topic_key(prefix, topic), nodes_of(prefix, topic), keep_ms(keep)
    return Call(
        BEAT_TOPIC,
        [nodes, entries],
        [node.encode(), end, ms],
        blanks=blanks.presence(entries, nodes, ms),
    )


def index_call(prefix: bytes, node: str, topic: str, add: bool, keep: float) -> Call:
    args = [topic.encode(), b"1" if add else b"0", keep_ms(keep)]
    return Call(INDEX, [node_key(prefix, node)], args)


def dead_call(prefix: bytes) -> Call:
    return Call(DEAD, [nodes_key(prefix)], [])


def claim_call(prefix: bytes, node: str, token: bytes, lease: float) -> Call:
    return Call(CLAIM, [node_key(prefix, node)], [token, _ms(lease)])


def sweep_topic_call(prefix: bytes, topic: str, node: str, ttl: float) -> Call:
    """Keys made blank for it (``blanks.py``) live as if added with ``ttl``."""
    entries, nodes = topic_key(prefix, topic), nodes_of(prefix, topic)
    args = [field(node, ""), node.encode(), channel(prefix, topic)]
    made = blanks.presence(entries, nodes, keep_ms(ttl))
    return EventCall(SWEEP_TOPIC, [entries, nodes], args, 2, made)


def swept_call(prefix: bytes, node: str, topic: str, token: bytes, lease: float) -> Call:
    return Call(SWEPT, [node_key(prefix, node)], [topic.encode(), token, _ms(lease)])


def forget_call(prefix: bytes, node: str) -> Call:
    return Call(FORGET, [nodes_key(prefix)], [node.encode()])


def release_call(prefix: bytes, node: str, token: bytes) -> Call:
    return Call(RELEASE, [node_key(prefix, node)], [token])


def topics_of(reply: object) -> list[str] | None:
    """The topics ``CLAIM`` returned, or ``None`` if another sweeper holds the node.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    return None if reply is None else [topic.decode() for topic in entries_of(reply)]


def _ms(seconds: float) -> bytes:
    return b"%d" % max(1, math.ceil(seconds * 1000))


def unsent_of(reply: object) -> list[bytes]:
    """The events ``ADD`` did not publish.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    return entries_of(reply)


def removed_of(reply: object) -> tuple[bool, list[bytes]]:
    """What ``REMOVE`` said: whether it removed the entry, and the events it did not
    publish.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    if isinstance(reply, list) and len(reply) == 2 and reply[0] in (0, 1):
        return bool(reply[0]), entries_of(reply[1])
    raise ValueError(f"unexpected reply {reply!r:.80}")


def swept_of(reply: object) -> tuple[list[bytes], list[bytes]]:
    """What ``SWEEP_TOPIC`` returned: the entries removed, and the events it did not
    publish.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    if isinstance(reply, list) and len(reply) == 2:
        return entries_of(reply[0]), entries_of(reply[1])
    raise ValueError(f"unexpected reply {reply!r:.80}")


def beat_of(reply: object) -> tuple[bool, bytes]:
    """What ``BEAT`` said: whether the node was alive, and its new end.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    if (
        isinstance(reply, list)
        and len(reply) == 2
        and reply[0] in (0, 1)
        and isinstance(reply[1], bytes)
    ):
        return bool(reply[0]), reply[1]
    raise ValueError(f"unexpected reply {reply!r:.80}")
