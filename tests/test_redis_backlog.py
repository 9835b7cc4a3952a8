"""The Redis session's inbound backlog (``wsroute.brokers.redis.backlog``): its
drop-until-half policy, the drop count and the rate-limited log line, and closing."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from wsroute.brokers import BrokerMessage, Position
from wsroute.brokers.redis.backlog import BURST, DROP_LOG_INTERVAL, Backlog


def message(n: int) -> BrokerMessage:
    return BrokerMessage("t", b"%d" % n)


async def test_a_full_backlog_drops_until_drained_to_half() -> None:
    backlog = Backlog(4)
    for n in range(6):
        backlog.put(message(n))  # 4 and 5 find it full
    assert backlog.dropped == 2
    assert (await backlog.get()).data == b"0"  # 3 left: more than half
    backlog.put(message(6))
    assert backlog.dropped == 3  # still dropping: not yet drained to half
    assert (await backlog.get()).data == b"1"  # 2 left: half
    backlog.put(message(7))
    assert backlog.dropped == 3
    assert [(await backlog.get()).data for _ in range(3)] == [b"2", b"3", b"7"]


async def test_drops_are_logged_at_most_once_per_interval(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    backlog = Backlog(2)
    for n in range(5):
        backlog.put(message(n))
    await trio.sleep(DROP_LOG_INTERVAL)
    backlog.put(message(5))
    lines = [r for r in caplog.records if "dropping messages" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.ERROR]
    assert "(1 dropped so far, latest on topic 't')" in lines[0].getMessage()
    assert "(4 dropped so far" in lines[1].getMessage()


async def test_a_closed_backlog_ends_the_consumer_and_discards_messages() -> None:
    backlog = Backlog(2)
    backlog.close()
    backlog.put(message(1))  # the session is gone: nothing to count
    assert backlog.dropped == 0
    with pytest.raises(StopAsyncIteration):
        await backlog.get()


async def test_once_empty_it_tells_where_each_topic_with_history_lost_messages() -> None:
    backlog = Backlog(2)
    kept = [BrokerMessage(topic, b"x", Position(n, "e")) for topic in "ab" for n in (1, 2, 3)]
    for item in kept[:3]:  # a1 a2 kept, a3 dropped
        backlog.put(item)
    backlog.put(message(9))  # no history: dropped, nothing to tell
    backlog.put(kept[3])  # b1 dropped
    assert backlog.dropped == 3
    assert [await backlog.get() for _ in range(2)] == kept[:2]
    told = {await backlog.get(), await backlog.get()}  # then the losses, without data
    assert told == {
        BrokerMessage("a", b"", Position(3, "e")),
        BrokerMessage("b", b"", Position(1, "e")),
    }
    backlog.put(kept[4])  # once told, messages flow as before
    assert await backlog.get() == kept[4]


async def test_the_consumer_takes_a_burst_in_a_row_then_lets_the_readers_run() -> None:
    backlog = Backlog(4 * BURST)
    for n in range(2 * BURST):
        backlog.put(message(n))
    with trio.testing.assert_no_checkpoints():  # as many as several readers put meanwhile
        taken = [await backlog.get() for _ in range(BURST)]
    with trio.testing.assert_checkpoints():
        taken.append(await backlog.get())
    assert [m.data for m in taken] == [b"%d" % n for n in range(BURST + 1)]
    for _ in range(BURST - 1):
        await backlog.get()
    with trio.testing.assert_checkpoints():  # empty: waits
        with trio.move_on_after(0.01):
            await backlog.get()
