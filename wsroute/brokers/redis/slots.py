"""Redis Cluster's key space: which of the 16384 hash slots a key (or a sharded
channel) belongs to, and which master serves each slot.

A key's slot is CRC16/XMODEM of the key modulo 16384; when the key holds a hash tag,
the part between its first ``{`` and the first ``}`` after it (if not empty), only
that part is hashed, so that keys with one tag share a slot. The cluster broker names
a topic's channel ``<prefix>{<topic>}`` for this reason: the channel and the topic's
history keys (``<prefix>{<topic>}:s`` and ``:m``) then share a slot, and a script
that keeps an event may publish it on that shard.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import NamedTuple

#: Hash slots of a Redis Cluster.
SLOTS = 16384


def _table() -> tuple[int, ...]:
    # CRC16/XMODEM: polynomial 0x1021, initial value 0, no reflection.
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _table()


def crc16(data: bytes) -> int:
    """CRC16/XMODEM of ``data`` (``b"123456789"`` gives ``0x31C3``)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc


def key_slot(key: bytes) -> int:
    """The hash slot of ``key`` (or of a channel name), hash tags honoured."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % SLOTS


class Address(NamedTuple):
    """Where a cluster node listens."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Topology:
    """Which master serves each slot, as one node told (``CLUSTER SLOTS``).

    Args:
        ranges: ``(first slot, last slot, master)`` for each range served.
    """

    def __init__(self, ranges: Sequence[tuple[int, int, Address]]) -> None:
        ordered = sorted(ranges)
        self._firsts = [first for first, _, _ in ordered]
        self._ranges = ordered
        self.masters = frozenset(address for _, _, address in ordered)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Topology) and self._ranges == other._ranges

    __hash__ = None  # type: ignore[assignment]

    def owner(self, slot: int) -> Address | None:
        """The master serving ``slot``, or ``None`` if no master serves it now."""
        index = bisect.bisect_right(self._firsts, slot) - 1
        if index < 0:
            return None
        first, last, address = self._ranges[index]
        return address if first <= slot <= last else None

    @property
    def complete(self) -> bool:
        """Whether every slot has a master."""
        expected = 0
        for first, last, _ in self._ranges:
            if first != expected:
                return False
            expected = last + 1
        return expected == SLOTS

    @classmethod
    def parse(cls, reply: object, seed: Address) -> Topology:
        """A topology from a ``CLUSTER SLOTS`` reply of the node at ``seed``. A node
        whose address is unknown to the one asked (an empty host) is taken to be on
        ``seed``'s host, as Redis documents.

        Raises:
            ValueError: the reply is not what ``CLUSTER SLOTS`` returns.
        """
        if not isinstance(reply, list):
            raise ValueError(f"unexpected CLUSTER SLOTS reply {reply!r:.80}")
        ranges = []
        for entry in reply:
            try:
                first, last, master = entry[0], entry[1], entry[2]
                raw_host, port = master[0], master[1]
                host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
                if host in ("", "?"):
                    host = seed.host
                ranges.append((int(first), int(last), Address(host, int(port))))
            except (TypeError, IndexError, ValueError, UnicodeDecodeError):
                raise ValueError(f"unexpected CLUSTER SLOTS entry {entry!r:.80}") from None
        return cls(ranges)
