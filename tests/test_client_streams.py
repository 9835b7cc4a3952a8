"""Bounded streams of received items (``wsroute.client._streams``)."""

from __future__ import annotations

import gc
import logging

import pytest
import trio
import trio.testing

from wsroute.client import EventsLost, Overflow, Stream


def make(buffer: int = 3, policy: Overflow = Overflow.ERROR) -> tuple[Stream[int], list[object]]:
    detached: list[object] = []
    return Stream(buffer, policy, detached.append), detached


async def test_items_come_out_in_order_and_the_consumer_waits_for_more() -> None:
    stream, _ = make()
    got: list[int] = []

    async def consume() -> None:
        async for item in stream:
            got.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        stream.push(1)
        stream.push(2)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [1, 2]
        stream.push(3)
        stream.end()
    assert got == [1, 2, 3]


async def test_error_policy_raises_after_the_buffered_items() -> None:
    stream, detached = make(buffer=2)
    for item in range(5):
        stream.push(item)
    assert [await stream.__anext__() for _ in range(2)] == [0, 1]
    with pytest.raises(EventsLost, match="more than 2 items"):
        await stream.__anext__()
    assert detached == [stream]  # it stopped taking items


@pytest.mark.parametrize(
    ("policy", "kept"), [(Overflow.DROP_OLDEST, [2, 3, 4]), (Overflow.DROP_NEWEST, [0, 1, 2])]
)
async def test_drop_policies_count_what_they_drop(
    policy: Overflow, kept: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    stream, _ = make(buffer=3, policy=policy)
    with caplog.at_level(logging.WARNING, logger="wsroute.client"):
        for item in range(5):
            stream.push(item)
    stream.end()
    assert [item async for item in stream] == kept
    assert stream.dropped == 2
    assert caplog.text.count("a client stream is full") == 1  # not once per drop


async def test_closing_or_dropping_a_stream_detaches_it() -> None:
    stream, detached = make()
    async with stream:
        stream.push(1)
    assert detached == [stream]
    assert [item async for item in stream] == []
    other, other_detached = make()
    del other
    gc.collect()
    assert len(other_detached) == 1


def test_a_buffer_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="buffer"):
        make(buffer=0)
