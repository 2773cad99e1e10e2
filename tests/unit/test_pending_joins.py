"""Rows waiting for a missing join side: the stage's predicate, the batch's report, the tracker."""

from __future__ import annotations

import asyncio

import orjson

from cdcapp.join.apply import apply_batch
from cdcapp.join.engine import EntityStage
from cdcapp.join.plan import plan
from cdcapp.model.messages import change, info, partition_of
from cdcapp.model.spec import load_spec
from cdcapp.runtime.metrics import PENDING_JOIN_OLDEST, PENDING_JOINS
from cdcapp.runtime.pending import PendingJoins

PLANS = plan(load_spec())
ITEM = {"id": 11, "order_id": 5, "product_id": 3, "quantity": 2, "price": "9.90"}
ORDER_VIEW = {"row": {"customer_id": 1, "order_date": "2024-02-01 00:00:00", "status": "paid"},
              "refs": {"customer": {"row": {"country": "FR", "city": "Lyon"}, "refs": {}}}}
PRODUCT_VIEW = {"row": {"name": "Lamp", "category": "home"}, "refs": {}}
PARTITIONS = 4


class Store:
    """A stage's state, in memory, for one partition."""

    def __init__(self) -> None:
        self.states: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        return self.states.get(key)

    def put(self, key: str, state: dict) -> None:
        self.states[key] = state

    def subscribe(self, parent: str, child_entity: str, ref: str, child_key: str, on: bool) -> None:
        pass

    def children(self, parent: str):
        return iter(())


class StateTable:
    """What the tracker reads of ``StageTables``: ``state.items(partition)``."""

    def __init__(self, states: dict[str, dict]) -> None:
        self.state = self
        self.states = states

    def items(self, partition: int):
        return iter([(k.encode(), orjson.dumps(v)) for k, v in self.states.items()])


def test_a_row_waits_until_every_parent_it_points_at_has_a_view() -> None:
    stage, store = EntityStage(PLANS["order_items"]), Store()
    # The item overtook its order and its product: it waits.
    assert apply_batch(stage, store, [change("pg|11", "c", ITEM, 10, 1)]).waiting == {"pg|11": True}
    assert apply_batch(stage, store, [info(["pg|11"], "order", "pg|5", ORDER_VIEW, 8, 2)]).waiting == {"pg|11": True}
    assert apply_batch(stage, store, [info(["pg|11"], "product", "pg|3", PRODUCT_VIEW, 4, 2)]).waiting == {
        "pg|11": False}
    # Its order deleted (a view of None): it waits again; the item deleted: it waits for nothing.
    assert apply_batch(stage, store, [info(["pg|11"], "order", "pg|5", None, 20, 3)]).waiting == {"pg|11": True}
    assert apply_batch(stage, store, [change("pg|11", "d", ITEM, 30, 4)]).waiting == {"pg|11": False}
    assert not stage.waiting(None)


def test_the_tracker_counts_rows_found_at_takeover_and_what_agents_report_wins() -> None:
    stage, store = EntityStage(PLANS["order_items"]), Store()
    keys = [f"pg|{i}" for i in range(1, 4000) if partition_of(f"pg|{i}", PARTITIONS) == 1]
    apply_batch(stage, store, [change(k, "c", {**ITEM, "id": int(k[3:])}, 10, 1) for k in keys])
    tracker = PendingJoins(stage, StateTable(store.states), PARTITIONS)  # type: ignore[arg-type]
    # A key the agent reported resolved while the scan ran keeps the agent's word.
    tracker.touched[1] = {keys[0]}
    tracker.update(1, {keys[0]: False}, 100.0)
    asyncio.run(tracker._scan(1, lambda p: True))
    assert set(tracker.since[1]) == set(keys[1:]) and len(keys) > 500  # more than one chunk
    scanned_at = tracker.since[1][keys[2]]
    tracker.update(1, {keys[1]: False, "pg|new": True}, scanned_at + 10)
    tracker.report(now=scanned_at + 30)
    assert PENDING_JOINS.labels("order_items")._value.get() == len(keys) - 1
    assert PENDING_JOIN_OLDEST.labels("order_items")._value.get() == 30
    # The partition given away: its rows are no longer this worker's.
    asyncio.run(tracker.follow(set(), lambda p: False))
    tracker.report(now=scanned_at + 60)
    assert PENDING_JOINS.labels("order_items")._value.get() == 0
    assert PENDING_JOIN_OLDEST.labels("order_items")._value.get() == 0
