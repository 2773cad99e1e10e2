"""The spec-driven workload on temporary SQLite databases: valid references, real and counted
changes, every kind of change on every entity, exact values, reproducibility, other writers."""

from __future__ import annotations

import itertools
import random
import sqlite3
import sys
from collections import Counter
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from cdcapp.cli import main
from cdcapp.model.spec import Spec, SpecError, load_spec
from cdcapp.sources.connections import connect_sqlite
from cdcapp.tools.spec_workload import SpecWorkload, WorkloadError, check_tables, create_tables, quote, table_ddl
from cdcapp.tools.workload import run_workload

BLOG = Path(__file__).resolve().parents[2] / "examples" / "blog" / "spec.yaml"

# Composite keys, keys that are references (the whole key of profiles and stock), two references
# sharing a column (stock's bin and warehouse), composite references that move (transfers), and
# every column type, the narrow and unsigned integers included.
COMPOSITE = """
entities:
  warehouses:
    key: [code]
    columns: {code: String, city: String, capacity: UInt32, opened: Date}
  profiles:
    key: [warehouse_code]
    columns: {warehouse_code: String, manager: String, rating: Float32}
    refs:
      warehouse: {entity: warehouses, columns: [warehouse_code]}
  bins:
    key: [warehouse_code, bin_no]
    columns: {warehouse_code: String, bin_no: Int16, label: String, max_kg: "Decimal(6, 3)"}
    refs:
      warehouse: {entity: warehouses, columns: [warehouse_code]}
  skus:
    key: [sku]
    columns: {sku: String, weight: Float64, small: Int8, big: UInt64, medium: UInt16}
  stock:
    key: [warehouse_code, bin_no, sku]
    columns: {warehouse_code: String, bin_no: Int16, sku: String, qty: UInt8, counted_at: DateTime}
    refs:
      bin: {entity: bins, columns: [warehouse_code, bin_no]}
      item: {entity: skus, columns: [sku]}
      warehouse: {entity: warehouses, columns: [warehouse_code]}
  transfers:
    key: [id]
    columns: {id: UInt16, from_wh: String, from_bin: Int16, to_wh: String, to_bin: Int16, sku: String,
              amount: "Decimal(38, 10)", at: DateTime}
    refs:
      source: {entity: bins, columns: [from_wh, from_bin]}
      target: {entity: bins, columns: [to_wh, to_bin]}
      item: {entity: skus, columns: [sku]}
"""
CHANGES = 3000


def fake_clock():
    ticks = itertools.count()
    return lambda: datetime(2024, 1, 1) + timedelta(seconds=next(ticks))


def spec_named(name: str, tmp: Path) -> Spec:
    if name == "blog":
        return load_spec(BLOG)
    if name == "ecommerce":
        return load_spec()
    (tmp / "composite.yaml").write_text(COMPOSITE)
    return load_spec(tmp / "composite.yaml")


def fresh(path: Path, spec: Spec) -> sqlite3.Connection:
    conn = connect_sqlite(path)
    create_tables(spec, "sqlite", conn)
    return conn


def generate(conn: sqlite3.Connection, spec: Spec, changes: int = CHANGES, seed: int = 7, **kwargs):
    return run_workload(conn, "sqlite", rate=0, changes=changes, seed=seed, now=fake_clock(),
                        workload=partial(SpecWorkload, spec), **kwargs)


def record_changes(conn: sqlite3.Connection, spec: Spec) -> None:
    """Temporary triggers log every row change, and whether an update left its row as it was."""
    conn.execute("CREATE TEMP TABLE changed (change TEXT, same INTEGER)")
    for name, entity in spec.entities.items():
        same = " AND ".join(f"OLD.{quote('sqlite', c)} IS NEW.{quote('sqlite', c)}" for c in entity.columns)
        for op, when, unchanged in (("insert", "INSERT", "0"), ("update", "UPDATE", same), ("delete", "DELETE", "0")):
            conn.execute(f"CREATE TEMP TRIGGER {quote('sqlite', f'count_{name}_{op}')} AFTER {when} ON "
                         f"main.{quote('sqlite', name)} BEGIN INSERT INTO changed VALUES ('{name}.{op}', {unchanged}); "
                         "END")


def dump(conn: sqlite3.Connection, spec: Spec) -> dict[str, list[tuple]]:
    return {name: conn.execute(f"SELECT * FROM {quote('sqlite', name)} ORDER BY "
                               f"{', '.join(quote('sqlite', c) for c in entity.key)}").fetchall()
            for name, entity in spec.entities.items()}


@pytest.fixture(scope="module", params=["blog", "ecommerce", "composite"])
def run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    spec = spec_named(request.param, tmp)
    conn = fresh(tmp / "source.db", spec)
    record_changes(conn, spec)
    stats = generate(conn, spec)
    yield spec, conn, stats, tmp
    conn.close()


def test_runs_exactly_the_requested_changes(run):
    _, _, stats, _ = run
    assert stats.changes == CHANGES == sum(stats.rows.values()) and stats.errors == 0


def test_references_hold(run):
    _, conn, _, _ = run
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_counted_changes_are_the_real_changes(run):
    _, conn, stats, _ = run
    real = Counter(dict(conn.execute("SELECT change, count(*) FROM changed GROUP BY change").fetchall()))
    assert real == stats.rows
    assert conn.execute("SELECT count(*) FROM changed WHERE same").fetchone() == (0,)  # no update left a row as it was


def test_every_entity_sees_every_kind_of_change(run):
    spec, conn, stats, _ = run
    workload = SpecWorkload(spec, conn, "sqlite", random.Random(), fake_clock())
    for name in spec.entities:
        assert all(stats.rows[f"{name}.{op}"] > 0 for op in ("insert", "delete")), name
        assert stats.ops[f"{name}.update"] > 0 or not workload.plain[name], name
        assert stats.ops[f"{name}.move"] > 0 or not workload.movable[name], name
        assert conn.execute(f"SELECT count(*) FROM {quote('sqlite', name)}").fetchone()[0] >= 10, name
    assert any(workload.movable.values())


def test_values_fit_their_types_exactly(run):
    spec, conn, _, _ = run
    texts = []
    for name, rows in dump(conn, spec).items():
        types = list(spec.column_types(name).values())
        for row in rows:
            for t, value in zip(types, row, strict=True):
                # What SQLite holds is already the canonical form: exact decimal places, whole seconds.
                assert t.canonical(value) == value, (name, t.name, value)
                if t.kind == "datetime":
                    assert "1973-03-04" <= value <= "2105-12-31 23:59:59"
                if t.kind == "str":
                    texts.append(value)
    assert any(not text.isascii() for text in texts) and all(text.isprintable() for text in texts)


def test_same_seed_same_database(run):
    spec, conn, _, tmp = run
    again = fresh(tmp / "again.db", spec)
    generate(again, spec)
    assert dump(again, spec) == dump(conn, spec)
    other = fresh(tmp / "other.db", spec)
    generate(other, spec, seed=8)
    assert dump(other, spec) != dump(conn, spec)


def test_continues_on_existing_data_beside_another_writer(tmp_path):
    spec = load_spec(BLOG)
    conn = fresh(tmp_path / "blog.db", spec)
    generate(conn, spec, changes=1000, seed=1)
    other = SpecWorkload(spec, connect_sqlite(tmp_path / "blog.db"), "sqlite", random.Random(2),
                         fake_clock())
    other.load()

    calls = itertools.count()

    def interfere(done: int, elapsed: float) -> None:
        if next(calls) % 20 == 0:  # between two of the run's transactions: keys it holds go stale
            try:
                other.step(10)
            except sqlite3.IntegrityError:  # and the other writer's go stale too
                other.load()

    stats = generate(conn, spec, changes=2000, seed=3, on_progress=interfere)
    assert stats.changes == 2000 and 0 < stats.errors < 50, stats.errors  # reloaded after each conflict
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_missing_tables_are_named(tmp_path):
    spec = load_spec(BLOG)
    conn = connect_sqlite(tmp_path / "empty.db")
    conn.execute('CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT)')
    with pytest.raises(WorkloadError, match=r'^sqlite: "authors" has no column country, joined_at; no table "posts"; '
                                            r'no table "comments" \(--create'):
        check_tables(spec, "sqlite", conn)


def test_ddl_of_the_server_sources():
    spec = load_spec(BLOG)
    pg, maria = table_ddl(spec, "postgres"), table_ddl(spec, "mariadb")
    assert pg[0] == 'CREATE SCHEMA IF NOT EXISTS "blog"'
    assert [s.split("(")[0] for s in pg if s.startswith("CREATE TABLE")] == [
        f'CREATE TABLE IF NOT EXISTS "blog"."{t}" ' for t in ("authors", "posts", "comments")]
    assert '"score" NUMERIC(4, 1) NOT NULL' in pg[4] and '"created_at" TIMESTAMP(0) WITHOUT TIME ZONE' in pg[4]
    assert 'FOREIGN KEY ("post_id") REFERENCES "blog"."posts" ("id")' in pg[4]
    assert 'CREATE INDEX IF NOT EXISTS "comments_post_fk" ON "blog"."comments" ("post_id")' in pg
    assert maria[0] == "CREATE DATABASE IF NOT EXISTS `blog` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    assert "FOREIGN KEY (`author_id`) REFERENCES `blog`.`authors` (`id`)" in maria[2]
    assert maria[2].endswith("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")


def test_ddl_types(tmp_path):
    spec = spec_named("composite", tmp_path)
    pg, maria = "\n".join(table_ddl(spec, "postgres")), "\n".join(table_ddl(spec, "mariadb"))
    for fragment in ('"capacity" BIGINT', '"big" NUMERIC(20, 0)', '"medium" INTEGER', '"small" SMALLINT',
                     '"qty" SMALLINT', '"rating" REAL', '"weight" DOUBLE PRECISION', '"opened" DATE',
                     'PRIMARY KEY ("warehouse_code", "bin_no", "sku")'):
        assert fragment in pg
    for fragment in ("`capacity` INT UNSIGNED", "`big` BIGINT UNSIGNED", "`small` TINYINT NOT", "`rating` FLOAT",
                     "`code` VARCHAR(255)", "`city` TEXT", "`from_wh` VARCHAR(255)", "`amount` DECIMAL(38, 10)"):
        assert fragment in maria


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["cdcapp", "generate", "--source", "sqlite", "--rate", "0", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_cli_creates_the_tables_or_says_they_are_missing(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "blog.db")
    code, err = cli(monkeypatch, capsys, "--db", db, "--spec", str(BLOG), "--changes", "50")
    assert code == 1 and err.strip().count("\n") == 0 and 'no table "authors"' in err
    code, _ = cli(monkeypatch, capsys, "--db", db, "--spec", str(BLOG), "--changes", "200", "--create")
    assert code == 0
    conn = sqlite3.connect(db)
    assert sum(n for (n,) in conn.execute("SELECT count(*) FROM authors UNION ALL SELECT count(*) FROM posts")) > 0


def test_a_cycle_of_references_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    cyclic = tmp_path / "cyclic.yaml"
    cyclic.write_text("entities:\n"
                      "  a: {columns: {id: Int64, b_id: Int64}, refs: {b: {entity: b, columns: [b_id]}}}\n"
                      "  b: {columns: {id: Int64, a_id: Int64}, refs: {a: {entity: a, columns: [a_id]}}}\n")
    with pytest.raises(SpecError, match="references form a cycle: a -> b -> a"):
        load_spec(cyclic)
    code, err = cli(monkeypatch, capsys, "--db", str(tmp_path / "x.db"), "--spec", str(cyclic), "--create")
    assert code == 2 and err.strip().count("\n") == 0 and "cycle" in err
