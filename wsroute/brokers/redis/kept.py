"""History in Redis: where a topic's past is kept, and the script that keeps it
(``pages.py`` reads it back).

**Keys.** A topic's history is two keys that share the hash tag ``{<topic>}``, so that
a Redis Cluster puts them in one slot and one script may touch both:

- ``<prefix>{<topic>}:s``, a stream of the kept events. Entry ids are
  ``<offset>-<ms>``, the offset and Redis' clock when kept (ids grow with the offset
  whatever the clock does), with one field ``d``, the bytes published. It is trimmed
  to about ``size`` entries (``MAXLEN ~``);
- ``<prefix>{<topic>}:m``, a hash of the topic's ``e`` (epoch), ``o<epoch>`` (its
  last offset, counted under the epoch's name) and the expiry deadlines (ms) last
  given to the stream (``s``) and to the hash (``m``).

**Expiry.** The stream must outlive the last publish by ``ttl``, the hash by
``meta_ttl``. Rather than two ``PEXPIRE`` per publish, a publish renews a key's expiry
only when less than its ttl is left, to a tenth more than it:
a busy topic renews each about once per tenth of its ttl, and its keys live up to 10 %
longer after the last publish. Reads never renew an expiry; a read that makes the
hash gives it ``meta_ttl``.

**Epochs.** When the hash is missing (the topic is new, Redis was flushed or
restarted empty, the topic idled past ``meta_ttl``), or holds no epoch (a cluster's
blank hash, ``blanks.py``), the script makes a new epoch, twelve hex digits of the
SHA1 of the caller's random seed and Redis' clock in microseconds, so that no two
lives of a topic share one; it deletes what is left of the stream, and offsets start
over at 1. Approximate trimming keeps up to a stream node (100 entries) more than
``size``; reads return only the ``size`` newest offsets and events younger than
``ttl``.

**Knowing the hash.** A kept publish costs Redis TIME, HINCRBY, XADD and PUBLISH.
It does not read the hash: the session passes the epoch and deadlines it last
learnt of the topic (``Known``), and the script counts under that epoch
(``HINCRBY <hash> o<epoch> 1``). An offset above 1 proves the epoch is the hash's:
its count exists only in a hash made for it. Otherwise (the session knows nothing,
or 1: a first offset, or a count just made) the script reads the hash (HMGET): a
count made under an epoch that is not the hash's is removed, and a hash without an
epoch gets a new one, all within the script, so nobody sees a count without its
epoch. Deadlines a session learnt are never later
than those the hash records (only a publish moves them, always later), so at worst
a session renews an expiry that another one already renewed.

**Channel payloads.** A kept event is published, by the script that keeps it, on the
topic's usual channel, framed with its position as ``framing.py`` says.
"""

from __future__ import annotations

import functools
import math
from typing import Final

import msgpack

from ..._history import History
from . import blanks
from .known import Entry, Known
from .pending import Blank, Call, Script

# Redis' clock, once per call: in ms (``now``) and as its two parts (``clock``); every
# history script starts with it (``pages.py``'s too).
CLOCK = """
local stream, meta = KEYS[1], KEYS[2]
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
"""
# A new epoch, from the caller's seed and the clock in microseconds.
NEW_EPOCH = "string.sub(redis.sha1hex({seed} .. clock[1] .. '.' .. clock[2]), 1, 12)"

#: KEYS: stream, hash. ARGV: data, then the call's context (``_context``: msgpack
#: strings one after the other): seed, size, ttl ms, meta_ttl ms, channel, and what the
#: caller knows of the hash: epoch, stream and hash deadlines ("" for unknown). A third
#: argument, if any, replaces the channel: "" keeps the event without publishing it.
#: Returns ``{offset, epoch, stream deadline, hash deadline, 1 if published}``, the
#: deadlines in ms as text; or the offset alone when it published under the epoch the
#: caller gave and renewed no deadline (most calls: a smaller reply, read faster).
#: ``PUBLISH`` is replaced by ``SPUBLISH`` on a cluster.
_PUBLISH_KEPT = (
    CLOCK
    + f"""
local data = ARGV[1]
local seed, size, ttl_ms, meta_ttl_ms, channel, epoch, s, m = cmsgpack.unpack(ARGV[2])
if ARGV[3] then channel = ARGV[3] end
local offset, learnt = 0, false
if epoch ~= '' then
  offset = redis.call('HINCRBY', meta, 'o' .. epoch, 1)
end
if offset < 2 then  -- the epoch is unknown, or its count was missing: look
  learnt = true
  local state = redis.call('HMGET', meta, 'e', 's', 'm')
  s, m = state[2], state[3]
  if state[1] ~= epoch then
    if offset == 1 then  -- counted under an epoch that is not the hash's: undo
      redis.call('HDEL', meta, 'o' .. epoch)
    end
    epoch = state[1]
    if not epoch then  -- a blank hash (``blanks.py``) goes: drop its field ''
      epoch = {NEW_EPOCH.format(seed="seed")}
      redis.call('DEL', stream)
      redis.call('HDEL', meta, '')
      redis.call('HSET', meta, 'e', epoch)
    end
    offset = redis.call('HINCRBY', meta, 'o' .. epoch, 1)
  end
end
local head = string.format('%d', offset)
redis.call('XADD', stream, 'MAXLEN', '~', size, head .. '-' .. string.format('%d', now),
  'd', data)
local ttl, deadline = tonumber(ttl_ms), tonumber(s)
if not deadline or deadline - now < ttl then
  learnt = true
  s = string.format('%d', now + ttl + math.floor(ttl / 10))
  redis.call('PEXPIREAT', stream, s)
  redis.call('HSET', meta, 's', s)
end
ttl, deadline = tonumber(meta_ttl_ms), tonumber(m)
if not deadline or deadline - now < ttl then
  learnt = true
  m = string.format('%d', now + ttl + math.floor(ttl / 10))
  redis.call('PEXPIREAT', meta, m)
  redis.call('HSET', meta, 'm', m)
end
if channel == '' then return {{offset, epoch, s, m, 0}} end
redis.call('PUBLISH', channel, '\\4' .. head .. ':' .. epoch .. '\\n' .. data)
if learnt then return {{offset, epoch, s, m, 1}} end
return offset  -- published under the epoch given, nothing new to learn
"""
)
PUBLISH_KEPT: Final = Script(_PUBLISH_KEPT)
#: The same for sharded pub/sub (a cluster), where the channel shares the keys' slot.
SPUBLISH_KEPT: Final = Script(
    _PUBLISH_KEPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
)


def keys(prefix: bytes, topic: str) -> list[bytes]:
    """The stream and the hash that keep ``topic``'s history."""
    tagged = b"%s{%s}" % (prefix, topic.encode())
    return [tagged + b":s", tagged + b":m"]


def _ms(seconds: float) -> bytes:
    return b"%d" % max(1, math.ceil(seconds * 1000))


@functools.lru_cache(maxsize=64)
def bounds(history: History) -> tuple[bytes, bytes, bytes]:
    """``history``'s size, ttl and meta_ttl as the scripts take them: made once per
    ``History`` (an app has a handful), not once per publish."""
    return b"%d" % history.size, _ms(history.ttl), _ms(history.meta_ttl)


def publish_call(
    prefix: bytes,
    topic: str,
    channel: bytes,
    data: bytes,
    history: History,
    seed: bytes,
    known: Known,
    *,
    sharded: bool = False,
) -> KeptCall:
    """The script call that keeps ``data`` and publishes it on ``channel`` (with
    ``SPUBLISH`` and the blanks of its keys, ``blanks.py``, if ``sharded``); ``seed``
    is the caller's random bytes, from which a new epoch is made if one is needed;
    ``known``, what the caller learnt of the topic's hash (``Known.learn`` takes the
    reply)."""
    packed = known.contexts.get(topic)
    if packed is None or packed[0] is not history:
        entry = known.entry(topic)
        packed = (history, entry, _context(seed, history, channel, entry))
        known.keep_context(topic, packed)
    _, entry, context = packed
    if sharded:
        script = SPUBLISH_KEPT
        names, made = cluster_keys(prefix, topic, bounds(history)[1])
    else:
        script, names, made = PUBLISH_KEPT, cached_keys(prefix, topic), ()
    call = KeptCall(script, names, [data, context], len(data), made)
    call.known = entry
    return call


def _context(seed: bytes, history: History, channel: bytes, entry: Entry) -> bytes:
    """What ``PUBLISH_KEPT`` takes besides the data, as one argument: it stays the
    same from one publish of a topic to the next until the session learns something
    new of the topic's hash, so it is packed then (``Known.contexts``), not per call.
    One argument instead of eight: the client packs each argument of a command, about
    0.1 µs apiece, on every call. Msgpack strings one after the other, which the
    script unpacks with ``cmsgpack`` (Redis's, which reads no binary type)."""
    epoch, stream_deadline, hash_deadline, _ = entry
    size, ttl, meta_ttl = bounds(history)
    parts = (seed, size, ttl, meta_ttl, channel, epoch, stream_deadline, hash_deadline)
    return b"".join(msgpack.packb(part, use_bin_type=False) for part in parts)


@functools.lru_cache(maxsize=4096)
def cached_keys(prefix: bytes, topic: str) -> tuple[bytes, bytes]:
    """``keys``, remembered for the topics published to most."""
    stream, meta = keys(prefix, topic)
    return stream, meta


@functools.lru_cache(maxsize=4096)
def cluster_keys(
    prefix: bytes, topic: str, ttl: bytes
) -> tuple[tuple[bytes, bytes], tuple[Blank, ...]]:
    """``cached_keys`` and how to make them blank on a cluster (``blanks.py``), remembered
    alike: a kept publish costs one look-up, as on one Redis."""
    stream, meta = keys(prefix, topic)
    return (stream, meta), blanks.history(stream, meta, ttl)


class KeptCall(Call):
    """A call of the script that keeps and publishes an event.

    Sent after a cluster's ``ASK`` to the node importing the topic's slot, it keeps
    the event there without publishing it: the subscribers of a sharded channel stay
    with the slot's old owner, which serves ``SPUBLISH`` until the migration ends. Its
    reply says so; the session then publishes the event there itself (``frame``).
    """

    __slots__ = ("known",)

    #: What the caller knew of the topic's hash when it made the call (``Known``).
    known: Entry

    def again(self) -> KeptCall:
        copy = KeptCall(self.script, self.keys, self.args, self.size, self.blanks)
        copy.known = self.known
        return copy

    def asked(self) -> KeptCall:
        args = [*self.args[:2], b""]  # the channel replaced: keep, do not publish
        copy = KeptCall(self.script, self.keys, args, self.size, self.blanks)
        copy.known = self.known
        copy.asking = True
        return copy


def was_published(reply: object) -> bool:
    """Whether ``PUBLISH_KEPT`` published the event it kept (a reply that
    ``Known.learn`` took): not after a cluster's ``ASK`` (``KeptCall.asked``)."""
    return type(reply) is int or (isinstance(reply, list) and reply[4] == 1)
