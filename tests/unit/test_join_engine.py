"""EntityStage groups, message by message: projections, coalescing, replays, self-healing."""

from __future__ import annotations

from cdcapp.join.engine import EntityStage, GroupResult, Outputs
from cdcapp.join.plan import plan
from cdcapp.model.messages import change, info, subscription
from cdcapp.model.spec import load_spec

PLANS = plan(load_spec())
PRODUCT = {"id": 3, "name": "Lamp", "category": "home", "price": "9.90", "created_at": "2024-01-01 00:00:00"}
ITEM = {"id": 11, "order_id": 5, "product_id": 3, "quantity": 2, "price": "9.90"}
ORDER_VIEW = {"row": {"customer_id": 1, "order_date": "2024-02-01 00:00:00", "status": "paid"},
              "refs": {"customer": {"row": {"country": "FR", "city": "Lyon"}, "refs": {}}}}
PRODUCT_VIEW = {"row": {"name": "Lamp", "category": "home"}, "refs": {}}


class Processed:
    """A group's result with what it emitted."""

    def __init__(self, stage: EntityStage, key: str, state: dict | None, group: list[dict]) -> None:
        self.out = Outputs()
        self.result: GroupResult = stage.process(key, state, group, self.out)
        self.state, self.changed = self.result.state, self.result.changed
        self.sends, self.rows = self.out.sends, self.out.rows
        self.broadcast = self.out.broadcasts[-1] if self.out.broadcasts else None


def test_the_plan_follows_only_what_facts_read() -> None:
    assert sorted(PLANS["products"].projection) == ["category", "name"]
    assert "price" not in PLANS["products"].projection
    assert sorted(PLANS["orders"].projection) == ["customer_id", "order_date", "status"]
    assert PLANS["orders"].exported_refs == ["customer"] and list(PLANS["orders"].join_refs) == ["customer"]
    assert sorted(PLANS["order_items"].join_refs) == ["order", "product"]
    assert PLANS["customers"].children == [("orders", "customer")]


def test_a_change_no_fact_reads_is_a_dimension_row_and_nothing_else() -> None:
    stage = EntityStage(PLANS["products"])
    first = Processed(stage, "pg|3", None, [change("pg|3", "c", PRODUCT, 10, 1)])
    assert first.broadcast is not None and first.broadcast.view == PRODUCT_VIEW
    repriced = Processed(stage, "pg|3", first.state, [change("pg|3", "u", {**PRODUCT, "price": "12.00"}, 11, 2)])
    assert [r.table for r in repriced.rows] == ["dim_product"] and repriced.rows[0].row["price"] == "12.00"
    assert repriced.broadcast is None and not repriced.sends


def test_a_group_is_one_transition_with_net_outputs() -> None:
    stage = EntityStage(PLANS["order_items"])
    moves = [change("pg|11", "c", ITEM, 10, 1), change("pg|11", "u", {**ITEM, "order_id": 6}, 11, 1),
             change("pg|11", "u", {**ITEM, "order_id": 5}, 12, 1)]
    result = Processed(stage, "pg|11", None, moves)
    kinds = sorted((s.key, s.message["t"]) for s in result.sends)
    assert kinds == [("pg|3", "sub"), ("pg|5", "sub"), ("pg|6", "unsub")], "one net message per parent"
    assert result.state["pos"] == 12 and not result.rows, "no fact row before both parents answered"


def test_the_fact_row_appears_when_the_last_parent_answers() -> None:
    stage = EntityStage(PLANS["order_items"])
    state = Processed(stage, "pg|11", None, [change("pg|11", "c", ITEM, 10, 1)]).state
    result = Processed(stage, "pg|11", state, [info(["pg|11"], "order", "pg|5", ORDER_VIEW, 8, 2),
                                            info(["pg|11"], "product", "pg|3", PRODUCT_VIEW, 4, 2)])
    (row,) = result.rows
    assert row.table == "fact_order" and row.row["_version"] == 10 and row.row["revenue"] == "19.80"
    assert row.row["customer_country"] == "FR" and row.row["product_name"] == "Lamp"


def test_an_info_from_a_former_parent_is_answered_with_unsub() -> None:
    stage = EntityStage(PLANS["order_items"])
    state = Processed(stage, "pg|11", None, [change("pg|11", "c", ITEM, 10, 1)]).state
    result = Processed(stage, "pg|11", state, [info(["pg|11"], "order", "pg|99", ORDER_VIEW, 8, 2)])
    assert [(s.key, s.message["t"]) for s in result.sends] == [("pg|99", "unsub")]
    assert not result.changed


def test_a_replayed_delete_re_emits_what_the_state_implies() -> None:
    """The state was saved, the outputs were lost: the redelivered change must re-emit them."""
    stage = EntityStage(PLANS["order_items"])
    state = Processed(stage, "pg|11", None, [change("pg|11", "c", ITEM, 10, 1)]).state
    state = Processed(stage, "pg|11", state, [info(["pg|11"], "order", "pg|5", ORDER_VIEW, 8, 2),
                                           info(["pg|11"], "product", "pg|3", PRODUCT_VIEW, 4, 2)]).state
    deleted = Processed(stage, "pg|11", state, [change("pg|11", "d", ITEM, 20, 3)])
    assert [r.row["_is_deleted"] for r in deleted.rows] == [1]
    replay = Processed(stage, "pg|11", deleted.state, [change("pg|11", "d", ITEM, 20, 3)])
    assert [(r.table, r.row["_is_deleted"], r.row["_version"]) for r in replay.rows] == [("fact_order", 1, 20)]
    assert sorted((s.key, s.message["t"]) for s in replay.sends) == [("pg|3", "unsub"), ("pg|5", "unsub")]


def test_a_replayed_change_of_a_parent_rebroadcasts_its_view() -> None:
    stage = EntityStage(PLANS["products"])
    state = Processed(stage, "pg|3", None, [change("pg|3", "c", PRODUCT, 10, 1)]).state
    replay = Processed(stage, "pg|3", state, [change("pg|3", "c", PRODUCT, 10, 1)])
    assert replay.broadcast is not None and replay.broadcast.view == PRODUCT_VIEW
    assert [r.table for r in replay.rows] == ["dim_product"]


def test_new_subscribers_get_the_view_and_a_changed_view_goes_to_all() -> None:
    stage = EntityStage(PLANS["products"])
    state = Processed(stage, "pg|3", None, [change("pg|3", "c", PRODUCT, 10, 1)]).state
    quiet = Processed(stage, "pg|3", state, [subscription("sub", "pg|3", "order_items", "product", "pg|11", 2)])
    assert [(s.key, s.message["view"]) for s in quiet.sends] == [("pg|11", PRODUCT_VIEW)] and not quiet.changed
    renamed = Processed(stage, "pg|3", state, [subscription("sub", "pg|3", "order_items", "product", "pg|12", 2),
                                            change("pg|3", "u", {**PRODUCT, "name": "Lantern"}, 11, 2)])
    assert renamed.broadcast.view["row"]["name"] == "Lantern" and not renamed.sends, \
        "the broadcast reaches the new subscriber too: no separate answer"


def test_a_poison_message_fails_its_group_and_nothing_else() -> None:
    from cdcapp.join.apply import apply_batch
    from cdcapp.join.router import MemoryStore

    store = MemoryStore()
    batch = [change("pg|3", "c", PRODUCT, 10, 1), {"t": "bogus", "k": "pg|4"}, ["not", "a", "message"],
             change("pg|5", "c", {**PRODUCT, "id": 5}, 11, 1)]
    result = apply_batch(EntityStage(PLANS["products"]), store, batch)
    assert sorted(key for key, _, _ in result.failed) == ["?", "pg|4"]
    assert store.get("pg|3")["pos"] == 10 and store.get("pg|5")["pos"] == 11 and store.get("pg|4") is None


# ------------------------------------------------------------------ snapshot order, stale drops
def product_at(name: str, pos: int, snapshot: bool = False) -> dict:
    return change("pg|3", "r" if snapshot else "u", {**PRODUCT, "name": name}, pos, 1, snapshot)


def test_a_streamed_change_supersedes_a_snapshot_row_whatever_its_position() -> None:
    # A transaction open across the snapshot writes below the snapshot's LSN and commits after it.
    stage = EntityStage(PLANS["products"])
    snapshot = Processed(stage, "pg|3", None, [product_at("Snapshot", 100, snapshot=True)])
    streamed = Processed(stage, "pg|3", snapshot.state, [product_at("Streamed", 90), product_at("Later", 95)])
    assert streamed.state["row"]["name"] == "Later" and not streamed.out.stale
    # A replay of the snapshot row, and of the streamed changes, leave the streamed state alone...
    replay = Processed(stage, "pg|3", streamed.state, [product_at("Snapshot", 100, snapshot=True),
                                                       product_at("Streamed", 90)])
    assert replay.state["row"]["name"] == "Later" and replay.out.stale == [("pg|3", 90, 95)]
    assert replay.out.outcomes[("chg", "duplicate")] == 1
    # ...while a snapshot taken later (past every position seen) is newer.
    resnapshot = Processed(stage, "pg|3", streamed.state, [product_at("Resnapshot", 120, snapshot=True)])
    assert resnapshot.state["row"]["name"] == "Resnapshot"


def test_the_same_history_replayed_from_nothing_ends_in_the_same_state() -> None:
    stage = EntityStage(PLANS["products"])
    history = [product_at("Snapshot", 100, snapshot=True), product_at("Streamed", 90), product_at("Later", 140)]
    whole = Processed(stage, "pg|3", None, history).state
    one_by_one = None
    for message in history:
        one_by_one = Processed(stage, "pg|3", one_by_one, [message]).state
    assert whole == one_by_one and whole["row"]["name"] == "Later"


def test_a_dropped_change_is_reported_with_both_positions() -> None:
    stage = EntityStage(PLANS["products"])
    state = Processed(stage, "pg|3", None, [product_at("New", 1000)]).state
    old = Processed(stage, "pg|3", state, [product_at("Old", 7)])
    assert old.state["row"]["name"] == "New" and old.out.stale == [("pg|3", 7, 1000)]


def test_a_row_never_seen_answers_no_subscriber_and_broadcasts_once_it_has_a_view() -> None:
    stage = EntityStage(PLANS["products"])
    sub = subscription("sub", "pg|3", "order_items", "product", "pg|11", 1)
    early = Processed(stage, "pg|3", None, [sub])
    assert not early.sends and not early.changed, "nothing to tell: the child holds no view and no version already"
    assert early.result.subscriptions == {("order_items", "product", "pg|11"): True}
    arrived = Processed(stage, "pg|3", None, [change("pg|3", "c", PRODUCT, 10, 2)])
    assert arrived.broadcast is not None and arrived.broadcast.view == PRODUCT_VIEW


def test_an_info_from_the_parent_the_row_just_left_is_not_answered_again() -> None:
    """The unsub went out with the move (and again with any replay of it); a broadcast that
    crossed it on the way is no sign that it was lost."""
    stage = EntityStage(PLANS["order_items"])
    state = Processed(stage, "pg|11", None, [change("pg|11", "c", ITEM, 10, 1)]).state
    moved = Processed(stage, "pg|11", state, [change("pg|11", "u", {**ITEM, "order_id": 6}, 11, 1)])
    assert ("pg|5", "unsub") in [(s.key, s.message["t"]) for s in moved.sends]
    crossed = Processed(stage, "pg|11", moved.state, [info(["pg|11"], "order", "pg|5", ORDER_VIEW, 8, 2)])
    assert not crossed.sends and not crossed.changed
