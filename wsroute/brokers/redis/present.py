"""Presence in Redis: who is on a topic, for every process to read, and the heartbeats
that tell a live process's entries from those of one that died.

**Keys.** For a prefix ``<prefix>``:

- ``<prefix>{<topic>}:p``, a hash of the topic's entries: field ``<n>:<node>:<member>``
  (``n`` is the length of ``node`` in bytes, so neither name needs escaping), value
  the entry; for an entry with a leave event (a topic with events), ``"\0" <length
  of the entry> ":" <entry> "+" <leave event>``, the event escaped as a plain publish
  (``framing.escape``); see ``packed``. It shares the hash tag of the topic's history
  keys (``kept.py``);
- ``<prefix>presence:nodes``, a sorted set of the nodes (processes), each scored by
  the end of its heartbeat: Redis' clock (``TIME``) plus its ttl, in ms;
- ``<prefix>presence:node:<node>``, a hash of the topics where the node has entries,
  each with how many, so that the heartbeat and the sweeper find them.

Each call is one script, queued with the publishes. A listing keeps the entries of
nodes whose heartbeat ends after Redis' now (one ``ZSCORE`` per node met); a sweep
takes the nodes whose heartbeat ended, deletes their fields from each topic of their
index (comparing field prefixes), forgets them and returns what it deleted. Redis
runs scripts one at a time, so of concurrent sweepers each entry goes to exactly one.
Clocks are Redis', never a process's: processes need not agree on the time.

**Events.** The script that adds a new entry publishes its join event, if given; the
one that removes an entry (a removal or a sweep) removes its leave event with it and
publishes it, on the topic's channel (``<prefix><topic>``): a process that dies after
the script ran loses no event, and an entry removed once is announced once. The event
lives in the entry's own value: neither a key of its own (a cluster refuses, while a
slot migrates, a script naming several keys of which some are missing, and fails one
that touches a missing key midway) nor a field of its own (listing would read twice
the fields).

**Expiry.** A Redis that every process has left must not keep their entries forever:
nobody is left to sweep them. Every key gets an expiry ``KEEP_FACTOR`` times a ttl,
which only ever lengthens it: a heartbeat gives it to the nodes' set, to its node's
index and to every topic hash in that index (so a quiet room, where nobody joins for
hours, keeps its entries while its nodes live); adding an entry gives it to the
topic's hash and the node's index, with the longest ttl this session has beaten with
(``UNBEATEN_TTL`` before its first beat). So entries vanish unswept, without leave
events, only after every node holding them stopped beating for ``KEEP_FACTOR`` times
the ttl. A heartbeat costs one ``PTTL`` and one ``PEXPIRE`` per topic of its node.

**Redis Cluster.** These scripts touch keys of several slots (a topic's hash and a
node's index; the heartbeat and the sweep, topic hashes found in an index), which a
cluster refuses (``CROSSSLOT``): ``present_sharded.py`` cuts the same data to fit.
"""

from __future__ import annotations

import math
from typing import Final

from ..._presence import DEFAULT_PRESENCE_TTL
from . import framing
from .pending import Call, Script

#: Keys live this many times a node's ttl past the last heartbeat or addition.
KEEP_FACTOR: Final = 10
#: The ttl that sets the expiry of entries added before a session's first heartbeat.
UNBEATEN_TTL: Final = DEFAULT_PRESENCE_TTL

# What every presence script may use, on one Redis and on a cluster: Redis' clock in
# ms; an expiry that only ever lengthens (a key without one gets it); the entries of a
# topic's hash whose node's heartbeat ends after now, by a sorted set of the nodes.
PRELUDE = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local function extend(key, ms)
  local left = redis.call('PTTL', key)
  if left ~= -2 and left < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
-- The entry in a value of a topic's hash (``packed``), and where it ends in the value.
-- Plain finds rather than patterns: a listing calls this for every entry.
local function entry(value)
  if string.byte(value) ~= 0 then return value, #value end
  local colon = string.find(value, ':', 3, true)
  local last = colon + tonumber(string.sub(value, 2, colon - 1))
  return string.sub(value, colon + 1, last), last
end
local function live_entries(entries, nodes)
  local flat = redis.call('HGETALL', entries)
  local alive, out = {}, {}
  for i = 1, #flat, 2 do
    -- The field is "<n>:<node>:<member>", or "" in a cluster's blank hash (``blanks.py``).
    local digits = string.match(flat[i], '^%d+')
    local live = false
    if digits then
      local node = string.sub(flat[i], #digits + 2, #digits + 1 + tonumber(digits))
      live = alive[node]
      if live == nil then
        local ends = redis.call('ZSCORE', nodes, node)
        live = ends ~= false and tonumber(ends) > now
        alive[node] = live
      end
    end
    if live then
      local value = flat[i + 1]
      if string.byte(value) == 0 then value = (entry(value)) end  -- no call when plain
      out[#out + 1] = value
    end
  end
  return out
end
"""

# An entry's events: ``join`` is the ARGV of a join event, "" for none or "+" and the
# payload, published if the entry is new. A removal publishes the leave event packed
# in the entry's value, if any (after the entry and a "+", see ``packed``). A
# channel "" (a cluster's script sent after ASK) publishes nothing: what it would have
# published is collected in ``unsent``, for the caller to publish.
EVENTS = """
local unsent = {}
local function announce(channel, payload)
  if channel == '' then unsent[#unsent + 1] = payload
  else redis.call('PUBLISH', channel, payload) end
end
local function joined(new, channel, join)
  if new and join ~= '' then announce(channel, string.sub(join, 2)) end
end
local function remove(key, field, value, channel)
  redis.call('HDEL', key, field)
  local _, last = entry(value)
  if #value > last then announce(channel, string.sub(value, last + 2)) end
end
"""

#: KEYS: the topic's hash, the node's index. ARGV: field, value (``packed``), topic,
#: expiry ms, channel, join (see ``EVENTS``).
ADD: Final = Script(
    PRELUDE
    + EVENTS
    + """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1
if new then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
extend(KEYS[1], ARGV[4])
extend(KEYS[2], ARGV[4])
joined(new, ARGV[5], ARGV[6])
return 1
"""
)

#: KEYS: the topic's hash, the node's index. ARGV: field, topic, channel. Returns 1
#: if removed (and publishes its leave event).
REMOVE: Final = Script(
    PRELUDE
    + EVENTS
    + """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
remove(KEYS[1], ARGV[1], value, ARGV[3])
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
"""
)

#: KEYS: the topic's hash, the nodes' set. Returns the entries of live nodes.
LIST: Final = Script(
    PRELUDE
    + """
return live_entries(KEYS[1], KEYS[2])
"""
)

#: KEYS: the nodes' set, the node's index. ARGV: node, ttl ms, expiry ms, key prefix.
#: Returns 1 if the node's heartbeat had not ended.
HEARTBEAT: Final = Script(
    PRELUDE
    + """
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
extend(KEYS[1], ARGV[3])
extend(KEYS[2], ARGV[3])
for _, topic in ipairs(redis.call('HKEYS', KEYS[2])) do
  extend(ARGV[4] .. '{' .. topic .. '}:p', ARGV[3])
end
if ends and tonumber(ends) > now then return 1 end
return 0
"""
)

#: KEYS: the nodes' set. ARGV: key prefix. Returns ``{topic, entry, ...}`` removed,
#: and publishes their leave events.
SWEEP: Final = Script(
    PRELUDE
    + EVENTS
    + """
local out = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))) do
  local index = ARGV[1] .. 'presence:node:' .. node
  local mark = #node .. ':' .. node .. ':'
  for _, topic in ipairs(redis.call('HKEYS', index)) do
    local key = ARGV[1] .. '{' .. topic .. '}:p'
    local flat = redis.call('HGETALL', key)
    for i = 1, #flat, 2 do
      if string.sub(flat[i], 1, #mark) == mark then
        remove(key, flat[i], flat[i + 1], ARGV[1] .. topic)
        out[#out + 1] = topic
        out[#out + 1] = (entry(flat[i + 1]))
      end
    end
  end
  redis.call('DEL', index)
  redis.call('ZREM', KEYS[1], node)
end
return out
"""
)


def topic_key(prefix: bytes, topic: str) -> bytes:
    """The hash of ``topic``'s entries."""
    return b"%s{%s}:p" % (prefix, topic.encode())


def nodes_key(prefix: bytes) -> bytes:
    """The sorted set of nodes by the end of their heartbeat."""
    return prefix + b"presence:nodes"


def node_key(prefix: bytes, node: str) -> bytes:
    """The index of the topics where ``node`` has entries."""
    return prefix + b"presence:node:" + node.encode()


def _escaped(payload: bytes) -> bytes:
    """``payload`` as a plain publish sends it (``framing.escape``), so that no
    subscriber takes it for a kept event."""
    return framing.escape(payload) if payload.startswith(framing.MARKED) else payload


def event_arg(payload: bytes | None) -> bytes:
    """A join event as the scripts take it: "" for none, else "+" and the payload."""
    return b"" if payload is None else b"+" + _escaped(payload)


def packed(entry: bytes, leave: bytes | None) -> bytes:
    """The value of ``entry`` in its topic's hash, with its ``leave`` event: the entry
    itself when it has none (and does not start with a zero byte), else a zero byte,
    the entry's length, ":", the entry, and "+" and the event if it has one."""
    if leave is None and not entry.startswith(b"\0"):
        return entry
    head = b"\0%d:%s" % (len(entry), entry)
    return head if leave is None else head + b"+" + _escaped(leave)


def unpacked(value: bytes) -> tuple[bytes, bytes | None]:
    """The entry and the leave event (as published) in a value made by ``packed``.

    Raises:
        ValueError: a value ``packed`` does not make.
    """
    if not value.startswith(b"\0"):
        return value, None
    digits, colon, rest = value[1:].partition(b":")
    if not colon or not digits.isdigit() or len(rest) < int(digits):
        raise ValueError(f"not a packed presence entry: {value!r:.80}")
    entry, leave = rest[: int(digits)], rest[int(digits) :]
    if leave and not leave.startswith(b"+"):
        raise ValueError(f"not a packed presence entry: {value!r:.80}")
    return entry, leave[1:] if leave else None


def field(node: str, member: str) -> bytes:
    """The field of ``member``'s entry, which names its node."""
    raw = node.encode()
    return b"%d:%s:%s" % (len(raw), raw, member.encode())


def _ms(seconds: float) -> bytes:
    return b"%d" % max(1, math.ceil(seconds * 1000))


def keep_ms(ttl: float) -> bytes:
    """How long keys live past a heartbeat or an addition, for nodes beating ``ttl``."""
    return _ms(KEEP_FACTOR * ttl)


def add_call(
    prefix: bytes,
    topic: str,
    member: str,
    node: str,
    entry: bytes,
    ttl: float,
    join: bytes | None = None,
    leave: bytes | None = None,
) -> Call:
    """The script call that adds (or replaces) ``member``'s entry on ``topic``, with
    its events (``BrokerSession.presence_add``)."""
    keys = [topic_key(prefix, topic), node_key(prefix, node)]
    args = [field(node, member), packed(entry, leave), topic.encode(), keep_ms(ttl)]
    return Call(ADD, keys, [*args, prefix + topic.encode(), event_arg(join)])


def remove_call(prefix: bytes, topic: str, member: str, node: str) -> Call:
    """The script call that removes ``member``'s entry from ``topic``."""
    keys = [topic_key(prefix, topic), node_key(prefix, node)]
    return Call(REMOVE, keys, [field(node, member), topic.encode(), prefix + topic.encode()])


def list_call(prefix: bytes, topic: str) -> Call:
    """The script call that lists the entries on ``topic`` of live nodes."""
    return Call(LIST, [topic_key(prefix, topic), nodes_key(prefix)], [])


def heartbeat_call(prefix: bytes, node: str, ttl: float, keep: float) -> Call:
    """The script call that keeps ``node`` alive for ``ttl``, its keys for ``keep_ms(keep)``."""
    keys = [nodes_key(prefix), node_key(prefix, node)]
    return Call(HEARTBEAT, keys, [node.encode(), _ms(ttl), keep_ms(keep), prefix])


def sweep_call(prefix: bytes) -> Call:
    """The script call that removes the entries of nodes whose heartbeat ended."""
    return Call(SWEEP, [nodes_key(prefix)], [prefix])


def flag_of(reply: object) -> bool:
    """What ``REMOVE`` or ``HEARTBEAT`` said.

    Raises:
        ValueError: the reply is not what the scripts return.
    """
    if reply in (0, 1) and isinstance(reply, int):
        return bool(reply)
    raise ValueError(f"unexpected reply {reply!r:.80}")


def entries_of(reply: object) -> list[bytes]:
    """The entries ``LIST`` returned.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    if isinstance(reply, list) and all(isinstance(entry, bytes) for entry in reply):
        return reply
    raise ValueError(f"unexpected reply {reply!r:.80}")


def removed_of(reply: object) -> list[tuple[str, bytes]]:
    """The ``(topic, entry)`` pairs ``SWEEP`` returned.

    Raises:
        ValueError: the reply is not what the script returns (``UnicodeDecodeError``
            for a topic that is not UTF-8).
    """
    entries = entries_of(reply)
    if len(entries) % 2:
        raise ValueError(f"unexpected reply {reply!r:.80}")
    topics, values = entries[::2], entries[1::2]
    return [(topic.decode(), entry) for topic, entry in zip(topics, values, strict=True)]
