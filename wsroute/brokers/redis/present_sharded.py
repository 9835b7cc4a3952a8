"""Presence on a Redis Cluster: the layout of ``present.py`` cut so that every script
touches one slot, at the price of a few steps that are no longer one atomic script.

**Keys.** For a prefix ``<prefix>``:

- ``<prefix>{<topic>}:p``, the topic's entries, as on one Redis (field
  ``<n>:<node>:<member>``);
- ``<prefix>{<topic>}:pn``, a sorted set of the nodes with entries on the topic, each
  scored by the end of its heartbeat (Redis' clock, ms): the topic's own copy of the
  nodes' liveness, in the topic's slot, so that listing is one script there;
- ``<prefix>presence:nodes``, every node by the end of its heartbeat, as on one Redis:
  it says whether a node was alive until its beat, and which nodes died;
- ``<prefix>presence:node:<node>``, the topics where the node has entries, for the
  sweeper. Only the node's own session writes it, before adding an entry there.

**Steps.** A heartbeat renews the node in the nodes' set, then its copy on every topic
where its session added entries (one script per topic, pipelined per shard); an entry
is added with the end of its node's last beat. A sweep takes the dead nodes out of the
nodes' set (one script: each dead node goes to one sweeper), takes each one's index,
and removes its entries topic by topic, only where its copy says it is still dead: a
node that came back and beat again meanwhile keeps them. A sweeper that dies midway
leaves entries that are never listed (their node's copy has ended) and expire with
their keys, without leave events. Key expiry is ``present.KEEP_FACTOR`` times the ttl,
as on one Redis.
"""

from __future__ import annotations

import math
from typing import Final

from .pending import Call, Script
from .present import PRELUDE, field, keep_ms, node_key, nodes_key, topic_key

#: KEYS: the topic's hash, its nodes. ARGV: field, entry, node, end ms ("" if the node
#: never beat here), expiry ms.
ADD: Final = Script(
    PRELUDE
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3]) end
extend(KEYS[1], ARGV[5])
extend(KEYS[2], ARGV[5])
return 1
"""
)

#: KEYS: the topic's hash. ARGV: field. Returns 1 if removed.
REMOVE: Final = Script("return redis.call('HDEL', KEYS[1], ARGV[1])")

#: KEYS: the topic's hash, its nodes. Returns the entries of live nodes.
LIST: Final = Script(
    PRELUDE
    + """
local flat = redis.call('HGETALL', KEYS[1])
local alive, out = {}, {}
for i = 1, #flat, 2 do
  local digits = string.match(flat[i], '^%d+')
  local node = string.sub(flat[i], #digits + 2, #digits + 1 + tonumber(digits))
  local live = alive[node]
  if live == nil then
    local ends = redis.call('ZSCORE', KEYS[2], node)
    live = ends ~= false and tonumber(ends) > now
    alive[node] = live
  end
  if live then out[#out + 1] = flat[i + 1] end
end
return out
"""
)

#: KEYS: the nodes' set. ARGV: node, ttl ms, expiry ms. Returns ``{1 if the node's
#: heartbeat had not ended, its new end in ms}``.
BEAT: Final = Script(
    PRELUDE
    + """
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
local until_ = string.format('%d', now + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], until_, ARGV[1])
extend(KEYS[1], ARGV[3])
if ends and tonumber(ends) > now then return {1, until_} end
return {0, until_}
"""
)

#: KEYS: the topic's nodes, its hash. ARGV: node, end ms, expiry ms.
BEAT_TOPIC: Final = Script(
    PRELUDE
    + """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
extend(KEYS[1], ARGV[3])
extend(KEYS[2], ARGV[3])
return 1
"""
)

#: KEYS: the node's index. ARGV: topic ("" to renew only), 1 to add it or 0 to drop
#: it, expiry ms.
INDEX: Final = Script(
    PRELUDE
    + """
if ARGV[1] ~= '' then
  if ARGV[2] == '1' then redis.call('HSET', KEYS[1], ARGV[1], 1)
  else redis.call('HDEL', KEYS[1], ARGV[1]) end
end
extend(KEYS[1], ARGV[3])
return 1
"""
)

#: KEYS: the nodes' set. Returns the nodes whose heartbeat ended, taken out of it.
CLAIM: Final = Script(
    PRELUDE
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
for _, node in ipairs(dead) do redis.call('ZREM', KEYS[1], node) end
return dead
"""
)

#: KEYS: the node's index. Returns its topics, and deletes it.
TAKE_INDEX: Final = Script(
    """
local topics = redis.call('HKEYS', KEYS[1])
redis.call('DEL', KEYS[1])
return topics
"""
)

#: KEYS: the topic's hash, its nodes. ARGV: field prefix of the node, node. Returns the
#: entries removed: none if the node's copy says it lives (it came back).
SWEEP_TOPIC: Final = Script(
    PRELUDE
    + """
local ends = redis.call('ZSCORE', KEYS[2], ARGV[2])
if ends and tonumber(ends) > now then return {} end
local out = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, #ARGV[1]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], flat[i])
    out[#out + 1] = flat[i + 1]
  end
end
redis.call('ZREM', KEYS[2], ARGV[2])
return out
"""
)


def nodes_of(prefix: bytes, topic: str) -> bytes:
    """The topic's copy of its nodes' liveness."""
    return topic_key(prefix, topic) + b"n"


def add_call(
    prefix: bytes, topic: str, member: str, node: str, entry: bytes, end: bytes, ttl: float
) -> Call:
    keys = [topic_key(prefix, topic), nodes_of(prefix, topic)]
    return Call(ADD, keys, [field(node, member), entry, node.encode(), end, keep_ms(ttl)])


def remove_call(prefix: bytes, topic: str, member: str, node: str) -> Call:
    return Call(REMOVE, [topic_key(prefix, topic)], [field(node, member)])


def list_call(prefix: bytes, topic: str) -> Call:
    return Call(LIST, [topic_key(prefix, topic), nodes_of(prefix, topic)], [])


def beat_call(prefix: bytes, node: str, ttl: float, keep: float) -> Call:
    ttl_ms = b"%d" % max(1, math.ceil(ttl * 1000))
    return Call(BEAT, [nodes_key(prefix)], [node.encode(), ttl_ms, keep_ms(keep)])


def beat_topic_call(prefix: bytes, topic: str, node: str, end: bytes, keep: float) -> Call:
    keys = [nodes_of(prefix, topic), topic_key(prefix, topic)]
    return Call(BEAT_TOPIC, keys, [node.encode(), end, keep_ms(keep)])


def index_call(prefix: bytes, node: str, topic: str, add: bool, keep: float) -> Call:
    args = [topic.encode(), b"1" if add else b"0", keep_ms(keep)]
    return Call(INDEX, [node_key(prefix, node)], args)


def claim_call(prefix: bytes) -> Call:
    return Call(CLAIM, [nodes_key(prefix)], [])


def take_index_call(prefix: bytes, node: str) -> Call:
    return Call(TAKE_INDEX, [node_key(prefix, node)], [])


def sweep_topic_call(prefix: bytes, topic: str, node: str) -> Call:
    mark = field(node, "")
    return Call(
        SWEEP_TOPIC, [topic_key(prefix, topic), nodes_of(prefix, topic)], [mark, node.encode()]
    )


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
