"""Blank keys: a script's missing keys, made on a cluster node importing their slot so
that the script may run there, in a form that every script takes for a missing key.

**Why.** While a slot migrates, its owner answers ``ASK`` to a script none of whose
keys it holds, and the node importing the slot, even after ``ASKING``, answers
``TRYAGAIN`` to a script naming several keys of which it lacks one (Redis 7.0,
``getNodeByQuery``): a brand-new topic, whose history or presence keys exist nowhere
yet, would wait for the end of the migration. The same node does run, after
``ASKING``, a command naming one key it lacks. So the session (``clustered.py``)
makes each missing key there with :data:`MAKE`, one key per call, each after its
own ``ASKING``, then sends the script again.

**What a blank key is.** Redis keeps no empty hash or sorted set, so a blank one
holds a placeholder that no real field or member can be:

- a stream (``kept.py``): empty, its one entry ``0-1`` added and deleted, so every
  id ``<offset>-<ms>`` (offset 1 and up) may follow;
- a hash: the field ``""``. A history hash without ``e`` is a topic without an epoch
  to both history scripts, which make one (deleting the stream, as for a new topic)
  and drop the field. No epoch is made here: a new epoch goes with deleting what is
  left of the stream (one that outlived its hash), which only a script naming both
  keys may do. A presence hash's fields are ``<n>:<node>:<member>``, never ``""``:
  listing skips it and adding an entry drops it;
- a sorted set (a topic's nodes, ``present_sharded.py``): the member ``""``, scored
  0, a heartbeat that ended long ago; scripts only ever look up, add or remove the
  nodes they name.

A key that exists is left alone, so making blanks twice, or racing another session
that does, is harmless. Each blank key gets the expiry the call says (``Blank``):
one its script does not give it (an empty stream added to under a known epoch) may
not be left without one; a blank the script never ran on goes with it.

**Where.** Each blank is sent after ``ASKING`` to the node that answered
``TRYAGAIN`` after ``ASKING``, so importing the slot a moment ago. A node that
neither imports nor owns the slot refuses it (``MOVED``); one that has meanwhile
become the owner (the migration ended) runs it, where it is the same missing key to
the script sent right after.
"""

from __future__ import annotations

from typing import Final

from .pending import Blank, Call, Script

STREAM: Final = b"stream"
HASH: Final = b"hash"
ZSET: Final = b"zset"

#: KEYS: the key. ARGV: its kind (``STREAM``, ``HASH``, ``ZSET``), expiry ms. Makes
#: the key blank if it is missing; returns 1 if it made it.
MAKE: Final = Script(
    """
local key, kind = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 1 then return 0 end
if kind == 'stream' then
  redis.call('XADD', key, '0-1', 'd', '')
  redis.call('XDEL', key, '0-1')
elseif kind == 'hash' then
  redis.call('HSET', key, '', '')
elseif kind == 'zset' then
  redis.call('ZADD', key, 0, '')
else
  return redis.error_reply('ERR unknown kind of blank key: ' .. kind)
end
redis.call('PEXPIRE', key, ARGV[2])
return 1
"""
)


def make_call(blank: Blank) -> Call:
    """The call that makes ``blank``'s key, sent after ``ASKING``."""
    key, kind, ms = blank
    call = Call(MAKE, [key], [kind, ms])
    call.asking = True
    return call


def history(stream: bytes, meta: bytes, ttl: bytes) -> tuple[Blank, ...]:
    """How to make a topic's history keys (``kept.py``) blank, to expire a tenth
    after ``ttl`` ms: the expiry a kept publish gives the stream, which one on a
    known epoch renews only when the deadline the hash records is near, so an empty
    stream added to meanwhile must outlive that deadline. A blank hash has no epoch:
    the script that makes one gives it its own expiry."""
    expiry = _longer(ttl)
    return (stream, STREAM, expiry), (meta, HASH, expiry)


def presence(entries: bytes, nodes: bytes, keep: bytes) -> tuple[Blank, ...]:
    """How to make a topic's presence keys (``present_sharded.py``) blank, to expire
    after ``keep`` ms, as adding an entry has them."""
    return (entries, HASH, keep), (nodes, ZSET, keep)


def _longer(ms: bytes) -> bytes:
    value = int(ms)
    return b"%d" % (value + value // 10)
