"""Which source changes the stage agent joins straight away: only those whose older changes, sent
through the stage topic by this worker or by the partition's previous owners, are handled."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from cdcapp.model.messages import change
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


def chg(key: str, pos: int) -> dict:
    return change(key, "u", {"id": 1}, pos, 0) | {"e": "customers"}


async def test_a_partition_joins_here_once_its_records_up_to_the_end_at_the_rebalance_are_handled() -> None:
    h = handover(Consumer({0: 0, 1: 10, 2: 10}, committed={1: 10, 2: 7}))
    held = await h.held()
    assert held == {0, 1, 2}
    assert [h.joins_here(chg(f"k{p}", 1), p, held) for p in (0, 1)] == [True, True]
    h.handle(2, 8, [])
    assert not h.joins_here(chg("k2", 1), 2, await h.held())
    h.handle(2, 9, [])
    assert h.joins_here(chg("k9", 1), 2, await h.held())


async def test_a_key_it_sent_through_the_stage_topic_goes_that_way_until_its_last_send_is_back() -> None:
    h = handover(Consumer({0: 5}))
    held = await h.held()
    first, second = chg("a", 1), chg("a", 2)
    assert not h.joins_here(first, 0, held) and not h.joins_here(second, 0, held)
    h.handle(0, 4, [])  # caught up with the previous owners' records
    held = await h.held()
    assert h.joins_here(chg("b", 1), 0, held), "a key it did not send"
    assert not h.joins_here(chg("a", 3), 0, held), "two of a's changes are still on their way"
    h.handle(0, 5, [first, chg("a", 0) | {"via": "someone else"}])
    assert not h.joins_here(chg("a", 4), 0, held)
    h.handle(0, 6, [second])
    assert not h.joins_here(chg("a", 5), 0, held), "sent while a was in flight: one more to come back"
    h.handle(0, 7, [chg("a", 3) | {"via": h.token}, chg("a", 4) | {"via": h.token}])
    h.handle(0, 8, [chg("a", 5) | {"via": h.token}])
    assert h.joins_here(chg("a", 6), 0, held)


async def test_a_partition_another_worker_holds_gets_its_changes_sent_untracked() -> None:
    h = handover(Consumer({0: 0}))
    message = chg("x", 1)
    assert not h.joins_here(message, 3, await h.held())
    assert "via" not in message and not h.in_flight


async def test_every_rebalance_starts_over_and_forgets_what_it_handled_of_revoked_partitions() -> None:
    consumer = Consumer({0: 3, 1: 3, 2: 3})
    h = handover(consumer)
    for partition in (0, 1, 2):
        h.handle(partition, 7, [])
    held = await h.held()
    assert all(h.joins_here(chg("k", 1), p, held) for p in (0, 1, 2))
    h.joins_here(chg("k", 1), 5, held)
    h.rebalanced({1})  # 0 and 2 stay; 1 was another worker's meanwhile
    consumer.ends = {0: 8, 1: 8, 2: 10}
    held = await h.held()
    assert [h.joins_here(chg(f"k{p}", 1), p, held) for p in (0, 1, 2)] == [True, False, False]
    h.handle(1, 7, [])
    h.handle(2, 9, [])
    held = await h.held()
    assert [h.joins_here(chg("n", 1), p, held) for p in (1, 2)] == [True, True]


async def test_end_offsets_out_of_reach_mean_every_change_goes_through_the_stage_topic() -> None:
    consumer = Consumer({0: 0})
    consumer.fail = True
    h = handover(consumer)
    assert not h.joins_here(chg("k", 1), 0, await h.held())
    consumer.fail = False
    assert not h.joins_here(chg("j", 1), 0, await h.held()), "asked again only a while after the failure"
    h.retry_at = 0.0
    assert not h.joins_here(chg("k", 2), 0, await h.held()), "its first change is still on its way"
    assert h.joins_here(chg("m", 1), 0, await h.held())
