"""The workload on a temporary SQLite database: integrity, reproducibility, mix, pacing."""

from __future__ import annotations

import itertools
import random
import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdcapp.sources.connections import connect_sqlite, create_oltp_schema
from cdcapp.tools import workload as gen
from cdcapp.tools.console import WorkloadProgress, print_stats

TABLES = ("customers", "products", "orders", "order_items")


def fake_clock():
    """One second per call from a fixed start: timestamps that do not depend on the run."""
    ticks = itertools.count()
    start = datetime(2024, 1, 1)
    return lambda: start + timedelta(seconds=next(ticks))


class FakeTime:
    """A monotonic clock that only moves when the workload sleeps: pacing without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds


def fresh(path: Path) -> sqlite3.Connection:
    conn = connect_sqlite(path)
    create_oltp_schema("sqlite", conn)
    return conn


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TABLES}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "shop.db"
    conn = fresh(path)
    stats = gen.run_workload(conn, "sqlite", rate=0, changes=2000, seed=7, now=fake_clock())
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
    gen.run_workload(again, "sqlite", rate=0, changes=2000, seed=7, now=fake_clock())
    assert dump(again) == dump(conn)
    other = fresh(tmp_path / "other.db")
    gen.run_workload(other, "sqlite", rate=0, changes=2000, seed=8, now=fake_clock())
    assert dump(other) != dump(conn)


def test_continues_on_an_existing_database(tmp_path):
    conn = fresh(tmp_path / "shop.db")
    gen.run_workload(conn, "sqlite", rate=0, changes=500, seed=1)
    stats = gen.run_workload(conn, "sqlite", rate=0, changes=500, seed=2)
    assert stats.changes == 500 and stats.ops["order_status"] > 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_rate_is_paced(tmp_path):
    conn = fresh(tmp_path / "shop.db")
    t = FakeTime()
    stats = gen.run_workload(conn, "sqlite", rate=100, changes=50, clock=t.clock, sleep=t.sleep)
    assert stats.changes == 50
    # Each change costs 1/rate of (fake) time, all of it spent sleeping.
    assert stats.elapsed_s == pytest.approx(0.5) == pytest.approx(t.slept)
    assert stats.rate == pytest.approx(100)


def test_duration_stops_the_run(tmp_path):
    conn = fresh(tmp_path / "shop.db")
    t = FakeTime()
    seen: list[tuple[int, float]] = []
    stats = gen.run_workload(
        conn, "sqlite", rate=500, duration=1.0, clock=t.clock, sleep=t.sleep,
        on_progress=lambda done, elapsed: seen.append((done, elapsed)),
    )
    # The last transaction started before the deadline and the run stopped right after it.
    assert seen[-1][1] < 1.0 <= stats.elapsed_s
    assert stats.elapsed_s == pytest.approx(stats.changes / 500) and stats.changes >= 500
    # One progress call per transaction: the changes so far, and the fake time before its pacing.
    assert len(seen) == stats.transactions and seen[-1][0] == stats.changes
    before = [0] + [done for done, _ in seen[:-1]]
    assert [elapsed for _, elapsed in seen] == pytest.approx([done / 500 for done in before])


def test_progress_bar_and_summary(tmp_path, capsys):
    conn = fresh(tmp_path / "shop.db")
    t = FakeTime()
    with WorkloadProgress(300, None) as progress:
        stats = gen.run_workload(
            conn, "sqlite", rate=500, changes=300, clock=t.clock, sleep=t.sleep, on_progress=progress.update
        )
        progress.finish(stats)
    task = progress.progress.tasks[0]
    assert (task.completed, task.fields["changes"]) == (300, 300)
    assert task.fields["rate"] == pytest.approx(500)
    print_stats(stats)
    assert "300 row changes" in capsys.readouterr().out


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
