"""The wsroute side of the benchmark: ``wsroute run wsroute_app:app --app-dir benchmarks/servers``.

Every App option keeps its default ("all features on": heartbeat every 20 s, strict
typed payloads, per-connection outbox of 1024 frames with the ``close`` policy,
connection caps, invalid-message budget). ``echo`` answers the sender; ``blast``
publishes its payload to the default topic ``all``, which every connection joins.
"""

from __future__ import annotations

import attrs

from wsroute import App

app = App()


@attrs.frozen
class Stamp:
    """What the load generator sends: a sequence number and its send time in ms."""

    seq: int
    t: float


@app.direct("echo")
async def echo(msg: Stamp) -> Stamp:
    return msg


@app.broadcast("blast")
async def blast(msg: Stamp) -> Stamp:
    return msg
