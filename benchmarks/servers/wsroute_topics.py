"""The wsroute app of ``cluster_fanout.py``: many topics, joined and published by name.

``wsroute run wsroute_topics:app --app-dir benchmarks/servers --broker URL``. ``join``
subscribes the connection to a list of topics and answers with their count; ``say``
(``{"topic", "i", "t"}``) is a broadcast to the topic it names. No default topic, so
a connection hears only what it joined. Outbox and concurrency as in
``redis_fanout.py``'s app.
"""

from __future__ import annotations

import attrs

from wsroute import App, Connection

app = App(default_topic=None, outbox_size=8192, max_concurrency=16, max_queued_requests=1024)


@attrs.frozen
class Say:
    """One event: its topic, a sequence number and the send time (perf_counter_ns)."""

    topic: str
    i: int
    t: int


@app.direct("join")
async def join(topics: list[str], conn: Connection) -> int:
    for topic in topics:
        await conn.subscribe(topic)
    return len(topics)


@app.broadcast("say", topic=lambda msg, conn: msg.topic)
async def say(msg: Say) -> Say:
    return msg
