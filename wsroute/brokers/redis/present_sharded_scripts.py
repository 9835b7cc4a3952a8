"""The Lua scripts of presence on a Redis Cluster, each touching one slot.

``present_sharded.py`` says what they keep (the keys) and how a heartbeat and a
resumable sweep are cut into steps, one script each; it makes the calls that send
them and reads their replies. The scripts are here, apart from that Python, so that
each module holds one of the two. They build on ``present.py``'s prelude and events,
the events published with ``SPUBLISH`` in the topic's slot.
"""

from __future__ import annotations

from typing import Final

from .pending import Script
from .present import EVENTS, PRELUDE

# The events of ``present.py``, published in the topic's slot (sharded pub/sub).
_SEVENTS = EVENTS.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")

#: KEYS: the topic's hash, its nodes. ARGV: field, value (``present.packed``), node,
#: end ms ("" if the node never beat here), expiry ms, channel, join (``EVENTS``).
#: Returns the events not published (channel "").
ADD: Final = Script(
    PRELUDE
    + _SEVENTS
    + """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1
if new then redis.call('HDEL', KEYS[1], '') end  -- a blank hash's field (``blanks.py``)
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3]) end
extend(KEYS[1], ARGV[5])
extend(KEYS[2], ARGV[5])
joined(new, ARGV[6], ARGV[7])
return unsent
"""
)

#: KEYS: the topic's hash. ARGV: field, channel. Returns ``{1 if removed, the events
#: not published (channel "")}`` (it publishes its leave event).
REMOVE: Final = Script(
    PRELUDE
    + _SEVENTS
    + """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return {0, unsent} end
remove(KEYS[1], ARGV[1], value, ARGV[2])
return {1, unsent}
"""
)

#: KEYS: the topic's hash, its nodes. Returns the entries of live nodes.
LIST: Final = Script(
    PRELUDE
    + """
return live_entries(KEYS[1], KEYS[2])
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

#: KEYS: the nodes' set. Returns the nodes whose heartbeat ended.
DEAD: Final = Script(
    PRELUDE
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
"""
)

# The claim on a dead node, in its index under the field "" (no topic is empty): "<end
# of its lease, ms>:<sweeper's token>". ``held`` says whether the sweeper ARGV[1] may
# work on the node now: the claim is its own, or its lease ended.
_CLAIMS = """
local function held(index, token)
  local claim = redis.call('HGET', index, '')
  if not claim then return true end
  local ends, owner = string.match(claim, '^(%d+):(.*)$')
  return owner == token or tonumber(ends) <= now
end
local function lease(index, token, ms)
  redis.call('HSET', index, '', string.format('%d', now + tonumber(ms)) .. ':' .. token)
  extend(index, ms)
end
"""

#: KEYS: the node's index. ARGV: sweeper's token, lease ms. Claims the node (a lease)
#: and returns its topics, or nil if another sweeper's lease holds it.
CLAIM: Final = Script(
    PRELUDE
    + _CLAIMS
    + """
if not held(KEYS[1], ARGV[1]) then return false end
lease(KEYS[1], ARGV[1], ARGV[2])
local topics = {}
for _, topic in ipairs(redis.call('HKEYS', KEYS[1])) do
  if topic ~= '' then topics[#topics + 1] = topic end
end
return topics
"""
)

#: KEYS: the topic's hash, its nodes. ARGV: field prefix of the node, node, channel.
#: Returns ``{the entries removed, the events not published}`` and publishes their
#: leave events: none if the node's copy says it lives (it came back).
SWEEP_TOPIC: Final = Script(
    PRELUDE
    + _SEVENTS
    + """
local ends = redis.call('ZSCORE', KEYS[2], ARGV[2])
if ends and tonumber(ends) > now then return {{}, unsent} end
local out = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, #ARGV[1]) == ARGV[1] then
    remove(KEYS[1], flat[i], flat[i + 1], ARGV[3])
    out[#out + 1] = (entry(flat[i + 1]))
  end
end
redis.call('ZREM', KEYS[2], ARGV[2])
return {out, unsent}
"""
)

#: KEYS: the node's index. ARGV: a topic swept, sweeper's token, lease ms. Drops the
#: topic; renews the lease and returns 1 if the claim is still the sweeper's, else 0.
SWEPT: Final = Script(
    PRELUDE
    + _CLAIMS
    + """
redis.call('HDEL', KEYS[1], ARGV[1])
if not held(KEYS[1], ARGV[2]) then return 0 end
lease(KEYS[1], ARGV[2], ARGV[3])
return 1
"""
)

#: KEYS: the nodes' set. ARGV: node. Forgets the node unless it beat again meanwhile.
FORGET: Final = Script(
    PRELUDE
    + """
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ends and tonumber(ends) <= now then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""
)

#: KEYS: the node's index. ARGV: sweeper's token. Drops the claim if it is the
#: sweeper's (the index goes with its last field).
RELEASE: Final = Script(
    PRELUDE
    + _CLAIMS
    + """
if held(KEYS[1], ARGV[1]) then redis.call('HDEL', KEYS[1], '') end
return 1
"""
)
