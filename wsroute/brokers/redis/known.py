"""What a session remembers of its topics' history hashes, so that a kept publish need
not read the hash.

The keep script (``PUBLISH_KEPT``, ``kept.py``; see "Knowing the hash" there) counts
under the epoch the caller passes and returns the offset alone when nothing changed.
:class:`Known` is the caller's side of that: one per session, bounded, it hands each
publish what was last learnt of the topic and learns from each reply. It is on the
hot path of every kept publish.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from ..._history import Position

#: The most topics whose hashes one session remembers (``Known``).
KNOWN_LIMIT: Final = 4096
#: What a session knows of a topic's hash: its epoch, the stream's and the hash's
#: deadlines as the script takes them, and the epoch as text.
Entry: TypeAlias = tuple[bytes, bytes, bytes, str]
_UNKNOWN: Final[Entry] = (b"", b"", b"", "")


class Known:
    """What one session last learnt of topics' hashes: each one's epoch and the
    expiry deadlines last seen or given, for ``PUBLISH_KEPT`` to count under that
    epoch without reading the hash (see "Knowing the hash" in ``kept.py``). Beyond
    ``KNOWN_LIMIT`` topics, the one learnt first is forgotten: its next publish
    reads the hash once more."""

    __slots__ = ("_topics", "contexts")

    def __init__(self) -> None:
        self._topics: dict[str, Entry] = {}
        #: Per topic, what ``kept.publish_call`` last packed from its entry, with the
        #: ``History`` it packed: ``(history, entry, context)``. ``learn`` drops it when
        #: it learns something new of the topic. A ``Known`` serves one session (one
        #: seed, one prefix), which the contexts hold too.
        self.contexts: dict[str, tuple[object, Entry, bytes]] = {}

    def keep_context(self, topic: str, packed: tuple[object, Entry, bytes]) -> None:
        """Remember ``packed`` for ``topic``, forgetting the oldest beyond the limit."""
        contexts = self.contexts
        if topic not in contexts and len(contexts) >= KNOWN_LIMIT:
            del contexts[next(iter(contexts))]
        contexts[topic] = packed

    def of(self, topic: str) -> tuple[bytes, bytes, bytes]:
        """The epoch and deadlines of ``topic``'s hash as last learnt (empty if not)."""
        epoch, stream_deadline, hash_deadline, _ = self.entry(topic)
        return epoch, stream_deadline, hash_deadline

    def entry(self, topic: str) -> Entry:
        """What was last learnt of ``topic``'s hash (empty if nothing)."""
        return self._topics.get(topic, _UNKNOWN)

    def learn(self, topic: str, reply: object, sent: Entry = _UNKNOWN) -> Position:
        """The position that ``PUBLISH_KEPT`` returned to a call made with ``sent``
        (``KeptCall.known``); remembers what the reply says of the hash. A bare offset
        says that nothing changed: it counts under the epoch sent.

        Raises:
            ValueError: the reply is not what the script returns.
        """
        if type(reply) is int and sent[0]:
            return Position(reply, sent[3])
        if not (isinstance(reply, list) and len(reply) == 5):
            raise ValueError(f"unexpected reply {reply!r:.80}")
        offset, epoch, stream_deadline, hash_deadline, published = reply
        if not (
            isinstance(offset, int)
            and isinstance(epoch, bytes)
            and isinstance(stream_deadline, bytes)
            and isinstance(hash_deadline, bytes)
            and published in (0, 1)
        ):
            raise ValueError(f"unexpected reply {reply!r:.80}")
        text = epoch.decode()
        self.remember(topic, (epoch, stream_deadline, hash_deadline, text))
        return Position(offset, text)

    def remember(self, topic: str, entry: Entry) -> None:
        """Take ``entry`` as what is known of ``topic``'s hash from now on."""
        topics = self._topics
        if topic not in topics and len(topics) >= KNOWN_LIMIT:
            del topics[next(iter(topics))]
        topics[topic] = entry
        self.contexts.pop(topic, None)
