"""Where a cluster session learns the cluster's topology: ``CLUSTER SLOTS`` of the
first seed that answers (the masters last known, then the configured seeds), asked in
turn with a short stagger, so that a hung node delays the answer by a moment only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio
from coredis.connection import BaseConnection
from coredis.exceptions import RedisError

from ..._util import collapse_exception_group
from .failures import explain
from .slots import Address, Topology

#: Seconds to wait for a seed's answer before asking the next one too.
SEED_STAGGER = 0.25


class ClusterSettings(Protocol):
    """What the links need of their broker (``RedisClusterBroker`` is one)."""

    seeds: list[Address]
    timeout: float
    publish_timeout: float
    health_check_interval: float
    give_up_after: float

    def describe(self) -> str: ...

    def _new_connection(self, address: Address | None = None) -> BaseConnection: ...


async def ask_topology(settings: ClusterSettings, seed: Address) -> Topology:
    """The topology as the node at ``seed`` tells it.

    Raises:
        RedisError: it could not be asked, or told nothing usable (the message says).
    """
    connection = settings._new_connection(seed)
    try:
        with trio.fail_after(settings.timeout), collapse_exception_group():
            async with trio.open_nursery() as nursery:
                await nursery.start(connection.run)
                try:
                    reply = await connection.create_request(b"CLUSTER", b"SLOTS")
                finally:
                    nursery.cancel_scope.cancel()
        topology = Topology.parse(reply, seed)
    except trio.TooSlowError:
        raise RedisError(f"{seed}: no answer within {settings.timeout:g} s") from None
    except (RedisError, OSError, ValueError) as exc:
        raise RedisError(f"{seed}: {explain(exc)}") from exc
    if not topology.masters:
        raise RedisError(f"{seed}: serves no slots yet")
    return topology


async def read_topology(settings: ClusterSettings, seeds: Sequence[Address]) -> Topology:
    """The topology as the first of ``seeds`` to answer tells it. The seeds are asked
    in order, each as soon as the one before failed or after ``SEED_STAGGER`` seconds
    without an answer, so that a hung node delays the answer by that much at most.

    Raises:
        RedisError: no seed answered (every seed's error, named).
    """
    errors: dict[Address, str] = {}
    found: list[Topology] = []
    async with trio.open_nursery() as nursery:

        async def ask(seed: Address, failed: trio.Event) -> None:
            try:
                found.append(await ask_topology(settings, seed))
                nursery.cancel_scope.cancel()
            except RedisError as exc:
                errors[seed] = str(exc)
                failed.set()

        for seed in dict.fromkeys(seeds):  # in order, once each
            failed = trio.Event()
            nursery.start_soon(ask, seed, failed)
            with trio.move_on_after(SEED_STAGGER):
                await failed.wait()
    if found:
        return found[0]
    told = "; ".join(errors[seed] for seed in dict.fromkeys(seeds) if seed in errors)
    raise RedisError(f"no seed node told the cluster's topology ({told})")
