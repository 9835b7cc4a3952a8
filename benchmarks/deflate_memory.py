"""What permessage-deflate's context takeover costs a connection in memory.

Usage (from the repository root)::

    .venv/bin/python benchmarks/deflate_memory.py [--count 1000] [--messages 1]

Makes ``--count`` compressors (or decompressors) with wsroute's settings, passes
``--messages`` different JSON events of about 290 bytes through each, keeps them all,
and prints the growth of this process's resident memory per object: what each
connection holds with ``server_context_takeover=True`` (a compressor) or
``client_context_takeover=True`` (a decompressor). Without context takeover a
connection holds neither. The figures are recorded in docs/limits.md.
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Callable
from pathlib import Path

from wsroute import Deflate


def rss() -> int:
    """This process's resident memory, in bytes (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def event(n: int) -> bytes:
    item = {"id": n, "name": f"widget {n}", "price": 1000 + 37 * n, "tags": ["red", "new"]}
    item["updated_at"] = f"2026-12-04T18:{n % 60:02d}:00Z"
    return json.dumps({"type": "item_updated", "topic": "items", "data": item}).encode()


def per_object(
    make: Callable[[], object], use: Callable[[object, int], None], args: argparse.Namespace
) -> float:
    kept = []
    before = rss()
    for _ in range(args.count):
        thing = make()
        for n in range(args.messages):
            use(thing, n)
        kept.append(thing)
    return (rss() - before) / args.count / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1)
    args = parser.parse_args()
    print(f"{args.count} objects, {args.messages} message(s) of about {len(event(1))} bytes each")

    def compress(compressor: object, n: int) -> None:
        compressor.compress(event(n))  # type: ignore[attr-defined]
        compressor.flush(zlib.Z_SYNC_FLUSH)  # type: ignore[attr-defined]

    for options in (Deflate(), Deflate(server_max_window_bits=12, memory_level=5)):
        bits, memory = options.server_max_window_bits, options.memory_level
        kib = per_object(
            lambda: zlib.compressobj(options.level, zlib.DEFLATED, -bits, memory),  # noqa: B023
            compress,
            args,
        )
        print(f"compressor, window {bits} bits, memory_level {memory}: {kib:.1f} KiB")
    for bits in (15, 12):
        # One client's messages, with its history, read by every decompressor.
        sender = zlib.compressobj(1, zlib.DEFLATED, -bits)
        stream = [
            sender.compress(event(n)) + sender.flush(zlib.Z_SYNC_FLUSH)
            for n in range(args.messages)
        ]
        kib = per_object(
            lambda: zlib.decompressobj(-bits),  # noqa: B023
            lambda decompressor, n: decompressor.decompress(stream[n]),  # type: ignore[attr-defined]  # noqa: B023
            args,
        )
        print(f"decompressor, window {bits} bits: {kib:.1f} KiB")


if __name__ == "__main__":
    main()
