"""History in Redis, read back: the script that reads a page of a topic's history,
its call, and the page it returns.

The keys it reads, their expiry and the epochs are ``kept.py``'s, which keeps
events there. A read never renews an expiry; a read that finds no epoch in the hash
makes one, and gives the hash ``meta_ttl``. It returns only the ``size`` newest
offsets and events younger than ``ttl`` (the stream may hold more: its trimming is
approximate).
"""

from __future__ import annotations

from typing import Final

from ..._history import History, Position
from .._base import BrokerMessage, HistoryPage
from .kept import CLOCK, NEW_EPOCH, bounds, cached_keys, cluster_keys
from .pending import Call, Script

#: KEYS: stream, hash. ARGV: seed, size, ttl ms, meta_ttl ms, since ("" for none),
#: limit ("" for none). Returns ``{epoch, top offset, {offset, data, ...}}``, oldest
#: first.
READ_HISTORY: Final = Script(
    CLOCK
    + """
local out = {}
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = """
    + NEW_EPOCH.format(seed="ARGV[1]")
    + """
  redis.call('DEL', stream)
  redis.call('HDEL', meta, '')
  redis.call('HSET', meta, 'e', epoch)
  redis.call('PEXPIRE', meta, ARGV[4])
  return {epoch, 0, out}
end
local top = tonumber(redis.call('HGET', meta, 'o' .. epoch)) or 0
local limit, since = tonumber(ARGV[6]), tonumber(ARGV[5])
if limit == 0 then
  return {epoch, top, out}
end
local first = math.max(top - tonumber(ARGV[2]), 0) + 1  -- the oldest offset within size
local oldest = now - tonumber(ARGV[3])  -- events kept at or before this are too old
local function add(entry)  -- id <offset>-<ms>, fields: d, data
  local offset, kept = string.match(entry[1], '^(%d+)-(%d+)$')
  if tonumber(kept) > oldest then
    out[#out + 1] = tonumber(offset)
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


def read_call(
    prefix: bytes,
    topic: str,
    history: History,
    since: int | None,
    limit: int | None,
    seed: bytes,
    *,
    sharded: bool = False,
) -> Call:
    """The script call that reads ``topic``'s history (see ``read_history``); on a
    cluster (``sharded``), with the blanks of its keys (``blanks.py``)."""
    size, ttl, meta_ttl = bounds(history)
    names, made = cluster_keys(prefix, topic, ttl) if sharded else (cached_keys(prefix, topic), ())
    return Call(
        READ_HISTORY,
        names,
        [
            seed,
            size,
            ttl,
            meta_ttl,
            b"" if since is None else b"%d" % since,
            b"" if limit is None else b"%d" % max(limit, 0),
        ],
        blanks=made,
    )


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
