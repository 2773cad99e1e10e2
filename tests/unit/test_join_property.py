"""The join engine against the OLTP ground truth, under random histories, batches and crashes.

Source changes are spread over partitioned FIFO queues (Kafka's only ordering guarantee), some
delivered twice (at least once). Stages take random batches from the heads of random partitions,
through the production ``apply_batch`` and broadcast expansion (``LocalRouter``). Crashes strike
at random: a partition loses the outputs of a batch whose state was saved, or loses the state of
batches whose outputs were sent; either way it replays from its last commit. What a
ReplacingMergeTree keeps (highest ``_version``, last inserted on ties, deleted rows removed) must
equal the join computed directly on the final OLTP tables.
"""

from __future__ import annotations

import random
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from cdcapp.join.router import LocalRouter
from cdcapp.model.messages import change, entity_key
from cdcapp.model.spec import load_spec
from tests.unit.oltp_model import OltpModel

SPEC = load_spec()
META = ("_source", "_version", "_is_deleted")


def replacing_merge_tree(rows, table):
    kept = {}
    for row in rows:
        if row.table != table:
            continue
        previous = kept.get(row.key)
        if previous is None or row.row["_version"] >= previous["_version"]:
            kept[row.key] = row.row
    return {r["id"]: {k: v for k, v in r.items() if k not in META} for r in kept.values() if not r["_is_deleted"]}


def run_history(seed: int, steps: int, partitions: int, duplicate_rate: float, max_batch: int = 1,
                crash_rate: float = 0.0, chunk: int = 1000):
    rng = random.Random(seed)
    model = OltpModel(rng)
    for _ in range(steps):
        model.step()
    router = LocalRouter(SPEC, partitions=partitions, rng=rng, max_batch=max_batch, chunk=chunk)
    source_queues: dict[tuple[str, int], deque] = {}
    for table, row_id, op, row, pos in model.changes:
        queue = source_queues.setdefault((table, row_id % partitions), deque())
        queue.append((table, row_id, op, row, pos))
        if rng.random() < duplicate_rate:
            queue.append((table, row_id, op, row, pos))  # at-least-once: a late redelivery
    crashes = 0
    while True:
        pending = [q for q in source_queues.values() if q]
        busy = router.busy()
        if pending and (rng.random() < 0.5 or not busy):
            table, row_id, op, row, pos = rng.choice(pending).popleft()
            router.send(table, change(entity_key("pg", [row_id]), op, row, pos, 0))
        elif busy:
            roll = rng.random()
            if roll < crash_rate and crashes < 200:
                crashes += 1
                router.step(lose_outputs=True)
            elif roll < 2 * crash_rate and crashes < 200 and router.committed:
                crashes += 1
                router.lose_state(rng.choice(sorted(router.committed)))
            else:
                router.step()
            if router.committed and rng.random() < 0.3:
                router.commit(rng.choice(sorted(router.committed)))
        else:
            break
    return model, router


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 120), partitions=st.integers(1, 4),
       duplicate_rate=st.sampled_from([0.0, 0.2]), max_batch=st.sampled_from([1, 3, 20]))
def test_fact_equals_oltp_join(seed, steps, partitions, duplicate_rate, max_batch):
    model, router = run_history(seed, steps, partitions, duplicate_rate, max_batch)
    assert replacing_merge_tree(router.sink, "fact_order") == model.expected_fact()


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 120), partitions=st.integers(1, 4),
       max_batch=st.sampled_from([1, 5, 20]), crash_rate=st.sampled_from([0.05, 0.2]))
def test_crashes_lose_nothing(seed, steps, partitions, max_batch, crash_rate):
    """State saved with its outputs lost, or outputs sent with their state lost: replays repair both."""
    model, router = run_history(seed, steps, partitions, 0.1, max_batch, crash_rate)
    assert replacing_merge_tree(router.sink, "fact_order") == model.expected_fact()
    assert replacing_merge_tree(router.sink, "dim_customer") == model.tables["customers"]
    assert replacing_merge_tree(router.sink, "dim_product") == model.tables["products"]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 120), max_batch=st.sampled_from([1, 20]))
def test_dimensions_equal_oltp_tables(seed, steps, max_batch):
    model, router = run_history(seed, steps, partitions=3, duplicate_rate=0.2, max_batch=max_batch)
    assert replacing_merge_tree(router.sink, "dim_customer") == model.tables["customers"]
    assert replacing_merge_tree(router.sink, "dim_product") == model.tables["products"]


def test_versions_never_decrease_per_key_without_state_loss():
    _, router = run_history(seed=7, steps=400, partitions=4, duplicate_rate=0.2, max_batch=10)
    last: dict[tuple[str, str], int] = {}
    for row in router.sink:
        assert row.row["_version"] >= last.get((row.table, row.key), -1)
        last[(row.table, row.key)] = row.row["_version"]


def test_a_large_history_settles_in_batches_with_crashes():
    model, router = run_history(seed=11, steps=3000, partitions=4, duplicate_rate=0.1, max_batch=50,
                                crash_rate=0.02, chunk=3)
    expected = model.expected_fact()
    assert len(expected) > 100
    assert replacing_merge_tree(router.sink, "fact_order") == expected
