"""The wsroute side of the benchmark: ``wsroute run wsroute_app:app --app-dir benchmarks/servers``.

Every App option keeps its default ("all features on": heartbeat every 20 s, strict
typed payloads, per-connection outbox of 1024 frames with the ``close`` policy,
connection caps, invalid-message budget; the subprotocols ``wsroute.v1.json`` and
``wsroute.v1.msgpack``). ``echo`` answers the sender; ``blast`` publishes its payload
to the default topic ``all``, which every connection joins. ``wsroute run
--compression deflate`` turns permessage-deflate on with ``wsroute.Deflate``'s defaults.

``app`` takes the tiny default payload (``{"seq", "t"}``); ``items_app`` the same
routes with a list of catalogue items besides (the load generator's ``--payload N``),
each structured into its attrs class and back, as a real app's typed payload would be.
"""

from __future__ import annotations

import attrs

from wsroute import App

app = App()
items_app = App()


@attrs.frozen
class Stamp:
    """What the load generator sends: a sequence number and its send time in ms."""

    seq: int
    t: float


@attrs.frozen
class Item:
    """One catalogue entry of the realistic payload (``loadgen.mjs``'s ``itemsOf``)."""

    id: int
    sku: str
    name: str
    price: float
    stock: int
    tags: list[str]
    updated_at: str


@attrs.frozen
class Listing:
    """A stamp with ``--payload N`` items."""

    seq: int
    t: float
    items: list[Item]


@app.direct("echo")
async def echo(msg: Stamp) -> Stamp:
    return msg


@app.broadcast("blast")
async def blast(msg: Stamp) -> Stamp:
    return msg


@items_app.direct("echo")
async def echo_items(msg: Listing) -> Listing:
    return msg


@items_app.broadcast("blast")
async def blast_items(msg: Listing) -> Listing:
    return msg
