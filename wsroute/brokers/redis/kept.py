"""History in Redis: where a topic's past is kept, the scripts that keep and read it,
and how a kept event travels on its channel.

**Keys.** A topic's history is two keys that share the hash tag ``{<topic>}``, so that
a Redis Cluster puts them in one slot and one script may touch both:

- ``<prefix>{<topic>}:s``, a stream of the kept events. Entry ids are ``<offset>-0``,
  fields ``d`` (the bytes published) and ``t`` (Redis' clock when kept, in ms). It is
  trimmed to about ``size`` entries (``MAXLEN ~``) and expires ``ttl`` after the last
  publish;
- ``<prefix>{<topic>}:m``, a hash of the topic's ``e`` (epoch) and ``o`` (its last
  offset). It expires ``meta_ttl`` after the last publish.

Every script is given a fresh epoch. It is used when the hash is missing (the topic
is new, Redis was flushed or restarted empty, the topic idled past ``meta_ttl``):
the script then deletes what is left of the stream, so offsets start over at 1 in
the new epoch. A read that makes the hash gives it ``meta_ttl``; reads never extend
an expiry. Approximate trimming keeps up to a stream node (100 entries) more than
``size``; reads return only the ``size`` newest offsets and events younger than
``ttl``.

**Channel payloads.** A kept event is published, by the script that keeps it, on the
topic's usual channel (``<prefix><topic>``) as::

    0x04 <offset, ASCII decimal> ":" <epoch> "\\n" <data>

for example ``b"\\x0457:k3JqbW1x\\n{...}"``: 11 bytes and the offset's digits more
than the data, put together in Lua by concatenation alone. A plain ``publish`` whose
data starts with byte 0x04 or 0x05 is sent as 0x05 followed by the data, so the
reader removes one 0x05 and never mistakes it for a kept event. Any other payload
travels unchanged (the hot path costs one look at the first byte); wsroute's own
payloads start with 0x01 to 0x03 or ``{``.
"""

from __future__ import annotations

import math
from typing import Final

from ..._history import History, Position, new_epoch
from .._base import BrokerMessage, HistoryPage
from .pending import Call, Script

#: First byte of a payload that carries its position in the topic's history.
KEPT: Final = 0x04
#: First byte put before a plain payload that would otherwise start with 0x04 or 0x05.
ESCAPE: Final = b"\x05"
#: First bytes that a plain payload may not start with as it is.
MARKED: Final = (b"\x04", b"\x05")
#: The longest ``<offset>:<epoch>`` head a reader looks for (20 digits, 64 characters).
_HEAD_LIMIT: Final = 1 + 20 + 1 + 64 + 1

# The topic's epoch from its hash or, when that is missing, the candidate (ARGV[1]),
# deleting what is left of the stream so that offsets start over.
_EPOCH = """
local stream, meta = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'e', 'o')
local epoch, top = state[1], tonumber(state[2]) or 0
local fresh = not epoch
if fresh then
  epoch, top = ARGV[1], 0
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 'o', 0)
end
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
"""

#: KEYS: stream, hash. ARGV: candidate epoch, data, size, ttl ms, meta_ttl ms, channel.
#: Returns ``{offset, epoch}``.
PUBLISH_KEPT: Final = Script(
    _EPOCH
    + """
local offset = string.format('%d', redis.call('HINCRBY', meta, 'o', 1))
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], offset .. '-0',
  'd', ARGV[2], 't', string.format('%d', now))
redis.call('PEXPIRE', stream, ARGV[4])
redis.call('PEXPIRE', meta, ARGV[5])
redis.call('PUBLISH', ARGV[6], '\\4' .. offset .. ':' .. epoch .. '\\n' .. ARGV[2])
return {tonumber(offset), epoch}
"""
)

#: KEYS: stream, hash. ARGV: candidate epoch, size, ttl ms, meta_ttl ms, since ("" for
#: none), limit ("" for none). Returns ``{epoch, top offset, {offset, data, ...}}``,
#: oldest first.
READ_HISTORY: Final = Script(
    _EPOCH
    + """
local out = {}
if fresh then
  redis.call('PEXPIRE', meta, ARGV[4])
  return {epoch, 0, out}
end
local limit, since = tonumber(ARGV[6]), tonumber(ARGV[5])
if limit == 0 then
  return {epoch, top, out}
end
local first = math.max(top - tonumber(ARGV[2]), 0) + 1  -- the oldest offset within size
local oldest = now - tonumber(ARGV[3])  -- events kept at or before this are too old
local function add(entry)  -- fields: d, data, t, ms
  if tonumber(entry[2][4]) > oldest then
    out[#out + 1] = tonumber(string.match(entry[1], '^%d+'))
    out[#out + 1] = entry[2][2]
  end
end
if since then
  -- The oldest after since; those too old come first, so read on past them.
  local start = math.max(since + 1, first)
  while true do
    local want = limit and (limit - #out / 2)
    local entries
    if want then
      entries = redis.call('XRANGE', stream, string.format('%d-0', start), '+', 'COUNT', want)
    else
      entries = redis.call('XRANGE', stream, string.format('%d-0', start), '+')
    end
    for _, entry in ipairs(entries) do add(entry) end
    if not want or #entries < want or #out / 2 >= limit then break end
    start = tonumber(string.match(entries[#entries][1], '^%d+')) + 1
  end
else
  -- The newest: when one is too old, so are all before it.
  local entries
  if limit then
    entries = redis.call('XREVRANGE', stream, '+', string.format('%d-0', first), 'COUNT', limit)
  else
    entries = redis.call('XREVRANGE', stream, '+', string.format('%d-0', first))
  end
  for i = #entries, 1, -1 do add(entries[i]) end
end
return {epoch, top, out}
"""
)


def keys(prefix: bytes, topic: str) -> list[bytes]:
    """The stream and the hash that keep ``topic``'s history."""
    tagged = b"%s{%s}" % (prefix, topic.encode())
    return [tagged + b":s", tagged + b":m"]


def _ms(seconds: float) -> bytes:
    return b"%d" % max(1, math.ceil(seconds * 1000))


def publish_call(prefix: bytes, topic: str, channel: bytes, data: bytes, history: History) -> Call:
    """The script call that keeps ``data`` and publishes it on ``channel``."""
    args = [new_epoch().encode(), data, b"%d" % history.size]
    return Call(
        PUBLISH_KEPT,
        keys(prefix, topic),
        [*args, _ms(history.ttl), _ms(history.meta_ttl), channel],
    )


def read_call(
    prefix: bytes, topic: str, history: History, since: int | None, limit: int | None
) -> Call:
    """The script call that reads ``topic``'s history (see ``read_history``)."""
    return Call(
        READ_HISTORY,
        keys(prefix, topic),
        [
            new_epoch().encode(),
            b"%d" % history.size,
            _ms(history.ttl),
            _ms(history.meta_ttl),
            b"" if since is None else b"%d" % since,
            b"" if limit is None else b"%d" % max(limit, 0),
        ],
    )


def position_of(reply: object) -> Position:
    """The position that ``PUBLISH_KEPT`` returned.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    if (
        isinstance(reply, list)
        and len(reply) == 2
        and isinstance(reply[0], int)
        and isinstance(reply[1], bytes)
    ):
        return Position(reply[0], reply[1].decode())
    raise ValueError(f"unexpected reply {reply!r:.80}")


def page_of(topic: str, reply: object) -> HistoryPage:
    """The page that ``READ_HISTORY`` returned.

    Raises:
        ValueError: the reply is not what the script returns.
    """
    if not (isinstance(reply, list) and len(reply) == 3):
        raise ValueError(f"unexpected reply {reply!r:.80}")
    raw_epoch, top, flat = reply
    if not (isinstance(raw_epoch, bytes) and isinstance(top, int) and isinstance(flat, list)):
        raise ValueError(f"unexpected reply {reply!r:.80}")
    epoch = raw_epoch.decode()
    offsets, datas = flat[::2], flat[1::2]
    if not all(isinstance(o, int) for o in offsets) or not all(isinstance(d, bytes) for d in datas):
        raise ValueError("unexpected entries in the reply")
    messages = [
        BrokerMessage(topic, data, Position(offset, epoch))
        for offset, data in zip(offsets, datas, strict=True)
    ]
    return HistoryPage(Position(top, epoch), messages)


def escape(data: bytes) -> bytes:
    """``data`` as a plain publish sends it (see the module docstring)."""
    return ESCAPE + data if data.startswith(MARKED) else data


def unframe(payload: bytes) -> tuple[bytes, Position | None]:
    """The data and position in a channel payload that starts with 0x04 or 0x05.

    Raises:
        ValueError: a 0x04 payload without a well-formed head.
    """
    if payload[0] != KEPT:
        return payload[1:], None
    end = payload.find(b"\n", 1, _HEAD_LIMIT)
    offset, colon, epoch = payload[1:end].partition(b":")
    if end < 0 or not colon or not offset.isdigit() or not epoch:
        raise ValueError(f"a kept event without its position: {payload[:_HEAD_LIMIT]!r}")
    return payload[end + 1 :], Position(int(offset), epoch.decode())
