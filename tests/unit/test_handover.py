"""When the stage agent may join a partition's changes straight from the source topics: only once
the stage records that may hold the same keys' older changes are handled."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from cdcapp.runtime.stage import Handover

STAGE = "cdcapp.stage"


class Consumer:
    def __init__(self, ends: dict[int, int], committed: dict[int, int] | None = None) -> None:
        self.ends = ends
        self._committed_offset = defaultdict(lambda: None, {TP(STAGE, p): o for p, o in (committed or {}).items()})
        self.fail = False

    def assignment(self) -> set[TP]:
        return {TP(STAGE, p) for p in self.ends} | {TP("oltp.customers", 0)}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        if self.fail:
            raise ConnectionError("broker away")
        return {tp: self.ends[tp.partition] for tp in tps}


def handover(consumer: Consumer) -> Handover:
    return Handover(SimpleNamespace(consumer=consumer), STAGE)  # type: ignore[arg-type]


def delivered(offset: int) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(SimpleNamespace(offset=offset))
    return future


async def test_a_partition_read_to_its_end_is_held_at_once_one_with_older_records_once_they_are_handled() -> None:
    h = handover(Consumer({0: 0, 1: 10, 2: 10}, committed={1: 10, 2: 7}))
    assert await h.held() == {0, 1}
    h.handle(2, 8)
    assert await h.held() == {0, 1}
    h.handle(2, 9)
    assert await h.held() == {0, 1, 2}


async def test_its_own_sends_while_not_ready_must_be_handled_too() -> None:
    h = handover(Consumer({0: 5}))
    assert await h.held() == set()
    pending = asyncio.get_running_loop().create_future()
    h.forwarded(0, pending)
    h.handle(0, 4)
    assert await h.held() == set(), "the change it sent is not delivered yet"
    pending.set_result(SimpleNamespace(offset=6))
    assert await h.held() == set(), "delivered at 6, handled only to 4"
    h.handle(0, 6)
    assert await h.held() == {0}
    h.forwarded(0, delivered(9))  # ready: nothing it sends holds it back any more
    assert await h.held() == {0}


async def test_every_rebalance_starts_over_and_forgets_what_it_handled_of_revoked_partitions() -> None:
    consumer = Consumer({0: 3, 1: 3, 2: 3})
    h = handover(consumer)
    for partition in (0, 1, 2):
        h.handle(partition, 7)
    assert await h.held() == {0, 1, 2}
    h.rebalanced({1})  # 0 and 2 stay; 1 was another worker's meanwhile
    consumer.ends = {0: 8, 1: 8, 2: 10}
    assert await h.held() == {0}
    h.handle(1, 7)
    h.handle(2, 9)
    assert await h.held() == {0, 1, 2}


async def test_end_offsets_out_of_reach_mean_every_change_goes_through_the_stage_topic() -> None:
    consumer = Consumer({0: 0})
    consumer.fail = True
    h = handover(consumer)
    assert await h.held() == set()
    consumer.fail = False
    assert await h.held() == {0}
