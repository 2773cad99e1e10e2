"""Schema sync on the real stack: the sources' tables change while the application writes, and
the mirrored dimensions follow without a restart; each test ends with ``verify`` equal.

The PostgreSQL and MariaDB tables are the shared ones: every column a test adds is dropped again
(and a renamed one renamed back) in its ``finally``, so later tests see the seed's schema.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdcapp.clickhouse.client import open_target, table_columns
from cdcapp.config import Settings
from cdcapp.kafka_admin import read_topic
from cdcapp.sources.connections import connect, connect_sqlite
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.workload import BackgroundWorkload
from tests.integration.sqlite_source import sqlite_source

pytestmark = pytest.mark.stack

#: the issue's bound: a new column has its values in ClickHouse this soon after the first change
VISIBLE_S = 30.0
#: the columns a test adds are named for its run: the shared topics still hold the events of earlier
#: runs, in which a column of the same name may have had another type
RUN = uuid.uuid4().hex[:6]
HOSTILE = f"x`; DROP TABLE fact_order; -- {RUN}"
TIER, WEIGHT, POINTS = f"loyalty_tier_{RUN}", f"weight_kg_{RUN}", f"sync_points_{RUN}"


@pytest.fixture(scope="module")
def pipeline(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    pipeline = Pipeline.fresh(stack, tmp_path_factory.mktemp("logs"), prefix="schema")
    pipeline.start_worker()
    # A fresh pipeline first catches up with the history of the shared topics.
    report = pipeline.verify("postgres")
    assert report.equal, report.render()
    yield pipeline
    pipeline.remove()


def clickhouse(pipeline: Pipeline) -> Any:
    return open_target(pipeline.settings.resolved_clickhouse_url, pipeline.database)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until ``check()`` is truthy; fails with ``what`` after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.25)
    return time.monotonic() - started


def current(pipeline: Pipeline, table: str, column: str, source: str, ids: list[int]) -> dict[int, Any]:
    target = clickhouse(pipeline)
    try:
        if column not in table_columns(target, f"{table}_current"):
            return {}
        quoted = "`" + column.replace("\\", "\\\\").replace("`", "\\`") + "`"
        rows = target.query(f"SELECT id, {quoted} FROM {target.database}.{table}_current "
                            f"WHERE _source = '{source}' AND id IN ({', '.join(map(str, ids))})")
    finally:
        target.close()
    return {int(i): v for i, v in rows}


def in_source(open_conn: Callable[[], Any], table: str, column: str, ids: list[int]) -> dict[int, Any]:
    """The column's values for those of ``ids`` the application has not deleted since."""
    conn = open_conn()
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT id, {column} FROM {table} WHERE id IN ({', '.join(map(str, ids))})")
        return {int(i): v for i, v in cursor.fetchall()}
    finally:
        conn.close()


def _number_or_text(value: Any) -> Any:
    return Decimal(str(value)).normalize() if isinstance(value, (int, float, Decimal)) else value


def same_values(pipeline: Pipeline, table: str, source: str, open_conn: Callable[[], Any], source_table: str,
                column: str, ids: list[int]) -> bool:
    """ClickHouse holds what the source holds now, for the rows of ``ids`` still there."""
    expected = {i: _number_or_text(v) for i, v in in_source(open_conn, source_table, column, ids).items()}
    actual = {i: _number_or_text(v) for i, v in current(pipeline, table, column, source, ids).items()}
    return bool(expected) and actual == expected


def column_type(pipeline: Pipeline, table: str, column: str) -> str | None:
    target = clickhouse(pipeline)
    try:
        return table_columns(target, table).get(column)
    finally:
        target.close()


def dead_letters(pipeline: Pipeline) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        topic = f"{pipeline.settings.internal_topic_prefix}.dlq"
        return [orjson.loads(r.value) async for r in read_topic(pipeline.settings.kafka_bootstrap, topic)]
    return asyncio.run(read())


def execute(settings: Settings, kind: str, *statements: str, params: tuple = ()) -> None:
    conn = connect(kind, settings)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement, params or None)
        conn.commit()
    finally:
        conn.close()


def newest_ids(settings: Settings, kind: str, table: str, n: int) -> list[int]:
    conn = connect(kind, settings)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {table} ORDER BY id DESC LIMIT {n}")
            return [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()


def test_postgres_add_widen_refuse_and_a_fact_column_that_disappears(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    app = BackgroundWorkload(lambda: connect("postgres", settings), "postgres", rate=100, seed=4242)
    app.start()
    added = {"customers": [TIER, HOSTILE], "products": [WEIGHT, POINTS]}
    renamed = False
    try:
        # -- ADD COLUMN while the application writes
        execute(settings, "postgres", f"ALTER TABLE customers ADD COLUMN {TIER} text",
                f'ALTER TABLE customers ADD COLUMN "{HOSTILE}" text',
                f"ALTER TABLE products ADD COLUMN {WEIGHT} numeric(8,3)",
                f"ALTER TABLE products ADD COLUMN {POINTS} integer")
        customers = newest_ids(settings, "postgres", "customers", 20)
        products = newest_ids(settings, "postgres", "products", 10)
        execute(settings, "postgres",
                f"""UPDATE customers SET {TIER} = 'gold-' || id, "{HOSTILE}" = 'harmless'
                    WHERE id IN ({', '.join(map(str, customers))})""",
                f"UPDATE products SET {WEIGHT} = 1.250 + id % 7, {POINTS} = 7 "
                f"WHERE id IN ({', '.join(map(str, products))})")
        pg = lambda: connect("postgres", settings)  # noqa: E731
        seconds = wait_for(lambda: same_values(pipeline, "dim_customer", "postgres", pg, "customers", TIER, customers),
                           VISIBLE_S, "loyalty_tier in dim_customer")
        wait_for(lambda: same_values(pipeline, "dim_product", "postgres", pg, "products", WEIGHT, products),
                 VISIBLE_S, "weight_kg in dim_product")
        print(f"new PostgreSQL column visible in ClickHouse {seconds:.1f} s after the update")
        weights = current(pipeline, "dim_product", WEIGHT, "postgres", products)
        assert {Decimal(str(w)) for w in weights.values()} <= {Decimal("1.250") + n for n in range(7)}
        assert column_type(pipeline, "dim_product", WEIGHT) == "Decimal(8, 3)"
        assert column_type(pipeline, "dim_product", POINTS) == "Int32"
        # The hostile name is one column of that name, and nothing else happened.
        assert set(current(pipeline, "dim_customer", HOSTILE, "postgres", customers).values()) == {"harmless"}
        assert column_type(pipeline, "fact_order", "id") == "Int64"

        # -- widening: INT to BIGINT, and a value only BIGINT holds
        execute(settings, "postgres", f"ALTER TABLE products ALTER COLUMN {POINTS} TYPE bigint",
                f"UPDATE products SET {POINTS} = 5000000000 WHERE id = {products[0]}")
        wait_for(lambda: current(pipeline, "dim_product", POINTS, "postgres", products[:1])
                 == {products[0]: 5_000_000_000}, VISIBLE_S, "the widened sync_points")
        assert column_type(pipeline, "dim_product", POINTS) == "Int64"

        # -- an incompatible change: dead-lettered with what to do; the rest flows
        letters_before = len(dead_letters(pipeline))
        execute(settings, "postgres",
                f"ALTER TABLE products ALTER COLUMN {POINTS} TYPE text USING {POINTS}::text",
                f"UPDATE products SET {POINTS} = 'many' WHERE id = {products[1]}")
        wait_for(lambda: len(dead_letters(pipeline)) > letters_before, VISIBLE_S, "the dead letter")
        letter = dead_letters(pipeline)[-1]
        assert letter["stage"] == "ingest" and "'many'" in letter["error"]
        assert "cannot widen to it" in letter["error"] and "cdcapp dlq replay" in letter["error"]
        execute(settings, "postgres", f"ALTER TABLE products DROP COLUMN {POINTS}")
        added["products"].remove(POINTS)

        # -- a column a fact reads disappears: the fact keeps flowing with the default
        app.finish()
        execute(settings, "postgres", "ALTER TABLE customers RENAME COLUMN city TO city_gone")
        renamed = True
        customer = customers[0]
        conn = connect("postgres", settings)
        try:
            order = conn.execute(
                "INSERT INTO orders (customer_id, order_date, status, total) VALUES (%s, now(), 'pending', 5) "
                "RETURNING id", (customer,)).fetchone()[0]
            conn.execute("UPDATE customers SET country = country WHERE id = %s", (customer,))
            item = conn.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, price) VALUES (%s, %s, 1, 5) RETURNING id",
                (order, products[0])).fetchone()[0]
            conn.commit()
        finally:
            conn.close()
        wait_for(lambda: current(pipeline, "fact_order", "customer_city", "postgres", [item]) == {item: ""},
                 VISIBLE_S, "the new fact row, with the default city")
        execute(settings, "postgres", "ALTER TABLE customers RENAME COLUMN city_gone TO city",
                f"UPDATE customers SET city = city WHERE id = {customer}")
        renamed = False
        report = pipeline.verify("postgres")
        assert report.equal, report.render()
    finally:
        if app.is_alive():
            app.finish()
        if renamed:
            execute(settings, "postgres", "ALTER TABLE customers RENAME COLUMN city_gone TO city")
        for table, columns in added.items():
            for column in columns:
                execute(settings, "postgres", f'ALTER TABLE {table} DROP COLUMN IF EXISTS "{column}"')


def test_mariadb_add_column(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    report = pipeline.verify("mariadb")
    assert report.equal, report.render()
    app = BackgroundWorkload(lambda: connect("mariadb", settings), "mariadb", rate=100, seed=4343)
    app.start()
    try:
        execute(settings, "mariadb", f"ALTER TABLE customers ADD COLUMN {TIER} VARCHAR(16) NULL")
        customers = newest_ids(settings, "mariadb", "customers", 20)
        execute(settings, "mariadb", f"UPDATE customers SET {TIER} = concat('tier-', id) "
                f"WHERE id IN ({', '.join(map(str, customers))})")
        maria = lambda: connect("mariadb", settings)  # noqa: E731
        seconds = wait_for(lambda: same_values(pipeline, "dim_customer", "mariadb", maria, "customers", TIER,
                                               customers), VISIBLE_S, "loyalty_tier from MariaDB")
        print(f"new MariaDB column visible in ClickHouse {seconds:.1f} s after the update")
        app.finish()
        report = pipeline.verify("mariadb")
        assert report.equal, report.render()
    finally:
        if app.is_alive():
            app.finish()
        execute(settings, "mariadb", f"ALTER TABLE customers DROP COLUMN IF EXISTS {TIER}")


def test_sqlite_add_column(pipeline: Pipeline, tmp_path: Path) -> None:
    source_id = f"sqlite-{pipeline.settings.app_id}"
    with sqlite_source(tmp_path, source_id) as db:
        app = BackgroundWorkload(lambda: connect_sqlite(db), "sqlite", rate=100, seed=4444)
        app.start()
        try:
            wait_for(lambda: app.changes > 200, 60, "the application's first changes")
            conn = connect_sqlite(db)
            try:
                conn.execute(f"ALTER TABLE customers ADD COLUMN {WEIGHT} DECIMAL(8, 3)")
                customers = [row[0] for row in conn.execute("SELECT id FROM customers ORDER BY id DESC LIMIT 20")]
                conn.execute(f"UPDATE customers SET {WEIGHT} = 2.5 WHERE id IN ({', '.join(map(str, customers))})")
            finally:
                conn.close()
            seconds = wait_for(lambda: same_values(pipeline, "dim_customer", source_id, lambda: connect_sqlite(db),
                                                   "customers", WEIGHT, customers), VISIBLE_S, "weight_kg from SQLite")
            print(f"new SQLite column visible in ClickHouse {seconds:.1f} s after the update")
            assert column_type(pipeline, "dim_customer", WEIGHT) == "Decimal(8, 3)"
        finally:
            app.finish()
        report = pipeline.verify("sqlite", source_id=source_id, sqlite_path=db)
        assert report.equal, report.render()
