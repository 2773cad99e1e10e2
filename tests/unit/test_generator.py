"""The workload on a temporary SQLite database: integrity, reproducibility, mix, pacing."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdcapp.sources import generator as gen
from cdcapp.sources.connections import connect_sqlite, ensure_schema

TABLES = ("customers", "products", "orders", "order_items")


def fake_clock():
    """One second per call from a fixed start: timestamps that do not depend on the run."""
    ticks = itertools.count()
    start = datetime(2024, 1, 1)
    return lambda: start + timedelta(seconds=next(ticks))


def fresh(path: Path) -> sqlite3.Connection:
    conn = connect_sqlite(path)
    ensure_schema("sqlite", conn)
    return conn


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TABLES}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "shop.db"
    conn = fresh(path)
    stats = gen.run_workload(conn, "sqlite", rate=0, changes=2000, seed=7, progress=False, now=fake_clock())
    yield conn, stats
    conn.close()


def test_runs_exactly_the_requested_changes(run):
    conn, stats = run
    assert stats.changes == 2000 == sum(stats.rows.values())
    assert stats.transactions == sum(stats.ops.values())
    assert stats.errors == 0 and stats.rate > 0


def test_counts_match_the_database(run):
    conn, stats = run
    for table in TABLES:
        live = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert live == stats.rows[f"{table}.insert"] - stats.rows[f"{table}.delete"], table


def test_foreign_keys_hold(run):
    conn, _ = run
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_order_totals_equal_their_items(run):
    conn, _ = run
    items: dict[int, Decimal] = {}
    for order_id, qty, price in conn.execute("SELECT order_id, quantity, price FROM order_items"):
        items[order_id] = items.get(order_id, Decimal(0)) + qty * Decimal(price)
    orders = conn.execute("SELECT id, total FROM orders").fetchall()
    assert orders
    for oid, total in orders:
        assert Decimal(total) == items.get(oid, Decimal(0)), oid
        assert total == format(Decimal(total).quantize(Decimal("0.01")), "f")  # exact 2-place strings


def test_values_have_the_documented_shapes(run):
    conn, _ = run
    statuses = {s for (s,) in conn.execute("SELECT DISTINCT status FROM orders")}
    assert statuses <= {"pending", "paid", "shipped", "completed", "cancelled"} and len(statuses) >= 4
    for (ts,) in conn.execute("SELECT created_at FROM customers UNION ALL SELECT order_date FROM orders"):
        datetime.strptime(ts, "%Y-%m-%d %H:%M:%S")
    emails = [e for (e,) in conn.execute("SELECT email FROM customers")]
    assert len(emails) == len(set(emails))


def test_mix_includes_every_kind(run):
    _, stats = run
    assert set(stats.ops) == set(gen.WEIGHTS)
    assert {"update", "insert", "delete"} == {k.split(".")[1] for k in stats.rows}


def test_same_seed_same_database(tmp_path, run):
    conn, _ = run
    again = fresh(tmp_path / "again.db")
    gen.run_workload(again, "sqlite", rate=0, changes=2000, seed=7, progress=False, now=fake_clock())
    assert dump(again) == dump(conn)
    other = fresh(tmp_path / "other.db")
    gen.run_workload(other, "sqlite", rate=0, changes=2000, seed=8, progress=False, now=fake_clock())
    assert dump(other) != dump(conn)


def test_continues_on_an_existing_database(tmp_path):
    conn = fresh(tmp_path / "shop.db")
    gen.run_workload(conn, "sqlite", rate=0, changes=500, seed=1, progress=False)
    stats = gen.run_workload(conn, "sqlite", rate=0, changes=500, seed=2, progress=False)
    assert stats.changes == 500 and stats.ops["order_status"] > 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_rate_is_paced(tmp_path):
    conn = fresh(tmp_path / "shop.db")
    stats = gen.run_workload(conn, "sqlite", rate=1000, changes=1000, progress=False)
    assert 0.8 <= stats.elapsed_s <= 1.6
    assert 700 <= stats.rate <= 1250


def test_duration_stops_the_run(tmp_path):
    conn = fresh(tmp_path / "shop.db")
    started = time.monotonic()
    stats = gen.run_workload(conn, "sqlite", rate=500, duration=0.5, progress=True)
    assert 0.4 <= time.monotonic() - started <= 1.5
    assert 100 <= stats.changes <= 400


def test_sqlite_placeholders_and_values():
    sql = gen._Sql(None, "sqlite")
    assert sql.q("SELECT %s, %s") == "SELECT ?, ?"
    assert sql.value(Decimal("12.30")) == "12.30"
    assert sql.value(datetime(2024, 5, 6, 7, 8, 9)) == "2024-05-06 07:08:09"
    pg = gen._Sql(None, "postgres")
    assert pg.q("SELECT %s") == "SELECT %s" and pg.value(Decimal("1.5")) == Decimal("1.5")


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=200))
def test_id_pool_behaves_like_a_set(ops):
    pool, model, rng = gen.IdPool(), set(), random.Random(0)
    for add, value in ops:
        (pool.add if add else pool.discard)(value)
        (model.add if add else model.discard)(value)
        assert len(pool) == len(model)
        assert all(v in pool for v in model)
        picked = pool.choice(rng)
        assert picked in model if model else picked is None
