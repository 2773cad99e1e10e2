"""Direct, partition-explicit table access on both Faust stores: writes, deletes, prefix scans."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.types import TP

from cdcapp.runtime.app import create_app
from cdcapp.runtime.tables import PartitionStore
from tests.unit.conftest import unit_settings


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_state_and_subscription_entries_per_partition(tmp_path: Path, store: str) -> None:
    app = create_app(unit_settings(tmp_path).model_copy(update={"store": store}))
    tables = app.pipeline.stage_tables["products"]
    partition = PartitionStore(tables, 2)
    partition.put("pg|1", {"pos": 7})
    for child in ("pg|11", "pg|12", "pg|13"):
        partition.subscribe("pg|1", "order_items", "product", child, True)
    partition.subscribe("pg|10", "order_items", "product", "pg|99", True)  # a key the first one prefixes
    partition.subscribe("pg|1", "order_items", "product", "pg|12", False)
    assert partition.get("pg|1") == {"pos": 7} and partition.get("pg|2") is None
    assert sorted(partition.children("pg|1")) == [("order_items", "product", "pg|11"),
                                                  ("order_items", "product", "pg|13")]
    assert list(partition.children("pg|10")) == [("order_items", "product", "pg|99")]
    changelog = [(p, k, v) for p, records in tables.subscriptions.pending.items() for k, v in records]
    assert changelog[-1] == (2, b"pg|1\x00order_items\x00product\x00pg|12", None), "a delete is a tombstone"
    assert sum(map(len, tables.state.pending.values())) == 1


def test_a_revoked_partition_opens_again_with_its_state(tmp_path: Path) -> None:
    app = create_app(unit_settings(tmp_path).model_copy(update={"store": "rocksdb://"}))
    tables = app.pipeline.stage_tables["products"]
    PartitionStore(tables, 1).put("pg|1", {"pos": 7})
    tables.state.write()
    store = tables.state.table.data
    # Faust closes a revoked partition's database by dropping its references; cdcapp keeps none.
    tp = TP(tables.state.table.changelog_topic.get_topic_name(), 1)
    store.revoke_partitions(tables.state.table, {tp})
    assert PartitionStore(tables, 1).get("pg|1") == {"pos": 7}


@pytest.mark.parametrize("reader", ["children", "items"])
def test_a_scan_under_way_keeps_no_revoked_database_open(tmp_path: Path, reader: str) -> None:
    """A scan can span awaits (a broadcast's sends, the pending-joins count): a revocation then
    drops Faust's handle, and the batch's next read of the partition opens the database again -
    which RocksDB refuses (its lock) while an iterator still holds the old handle."""
    app = create_app(unit_settings(tmp_path).model_copy(update={"store": "rocksdb://"}))
    tables = app.pipeline.stage_tables["products"]
    partition = PartitionStore(tables, 1)
    for n in range(2500):
        partition.put(f"pg|{n}", {"pos": n})
        partition.subscribe("pg|1", "order_items", "product", f"pg|{n}", True)
    scan = partition.children("pg|1") if reader == "children" else tables.state.items(1)
    first = next(scan)
    for table in (tables.state, tables.subscriptions):
        tp = TP(table.table.changelog_topic.get_topic_name(), 1)
        table.table.data.revoke_partitions(table.table, {tp})
    assert PartitionStore(tables, 1).get("pg|7") == {"pos": 7}
    partition.subscribe("pg|1", "order_items", "product", "pg|x", True)
    assert len([first, *scan]) >= 2500


def test_rocksdb_writes_wait_for_one_batch_and_reads_see_them_meanwhile(tmp_path: Path) -> None:
    app = create_app(unit_settings(tmp_path).model_copy(update={"store": "rocksdb://"}))
    tables = app.pipeline.stage_tables["products"]
    partition = PartitionStore(tables, 3)
    partition.put("pg|1", {"pos": 1})
    partition.put("pg|2", {"pos": 2})
    tables.state.write()
    partition.put("pg|1", {"pos": 3})
    tables.state.put(3, b"pg|2", None)
    db = tables.state.table.data._db_for_partition(3)
    assert db.get(b"pg|1") == b'{"pos":1}' and db.get(b"pg|2") is not None, "not written yet"
    assert partition.get("pg|1") == {"pos": 3} and partition.get("pg|2") is None, "but read"
    tables.state.write()
    assert db.get(b"pg|1") == b'{"pos":3}' and db.get(b"pg|2") is None
    assert [k for k, _ in tables.state.pending[3]] == [b"pg|1", b"pg|2", b"pg|1", b"pg|2"], "changelog: every write"
