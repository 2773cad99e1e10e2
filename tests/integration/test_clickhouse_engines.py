"""The two ClickHouse engines the sink writes to behave alike on what the pipeline relies on:
ReplacingMergeTree(version) with Decimal(12,2) and DateTime, read with FINAL, and for equal versions
the row inserted last wins.

The server is Debian's ClickHouse 18.16 (no LowCardinality, DateTime64 or is_deleted), the embedded
one is chdb; the DDL here is what both accept.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_driver import Client

from cdcapp.config import Settings

DDL = """
CREATE TABLE {table} (
    id UInt64,
    name String,
    price Decimal(12, 2),
    updated_at DateTime,
    _version UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY id
"""

# (id, name, price, updated_at, version), inserted one INSERT each so that every row is its own part.
ROWS = [
    (1, "first", Decimal("10.50"), datetime(2024, 1, 1, 0, 0, 0), 1),
    (1, "newer version", Decimal("11.25"), datetime(2024, 1, 2, 0, 0, 0), 2),
    (1, "older version arriving late", Decimal("9.99"), datetime(2024, 1, 3, 0, 0, 0), 1),
    (2, "tie, inserted first", Decimal("1.00"), datetime(2024, 2, 1, 12, 30, 0), 7),
    (2, "tie, inserted last", Decimal("123456789.99"), datetime(2024, 2, 1, 12, 30, 1), 7),
]
EXPECTED_FINAL = [
    (1, "newer version", Decimal("11.25"), datetime(2024, 1, 2, 0, 0, 0), 2),
    (2, "tie, inserted last", Decimal("123456789.99"), datetime(2024, 2, 1, 12, 30, 1), 7),
]
QUERY = "SELECT id, name, price, updated_at, _version FROM {table} FINAL ORDER BY id"


def sql_literal(row: tuple) -> str:
    id_, name, price, ts, version = row
    return f"({id_}, '{name}', {price}, '{ts:%Y-%m-%d %H:%M:%S}', {version})"


@pytest.mark.stack
def test_clickhouse_server(stack: Settings) -> None:
    client = Client("127.0.0.1", port=stack.clickhouse_port)
    db = f"cdcapp_test_{uuid.uuid4().hex[:12]}"
    client.execute(f"CREATE DATABASE {db}")
    try:
        table = f"{db}.items"
        client.execute(DDL.format(table=table))
        for row in ROWS:
            client.execute(f"INSERT INTO {table} (id, name, price, updated_at, _version) VALUES", [row])
        assert client.execute(f"SELECT count() FROM {table}") == [(len(ROWS),)]
        assert client.execute(QUERY.format(table=table)) == EXPECTED_FINAL
        # After a forced merge the table holds the FINAL answer on disk too.
        client.execute(f"OPTIMIZE TABLE {table} FINAL")
        assert client.execute(f"SELECT id, name, price, updated_at, _version FROM {table} ORDER BY id") == EXPECTED_FINAL
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {db}")
        client.disconnect()


def test_chdb(tmp_path: Path) -> None:
    from chdb import session

    sess = session.Session(str(tmp_path / "chdb"))
    try:
        sess.query("CREATE DATABASE IF NOT EXISTS t")
        sess.query(DDL.format(table="t.items"))
        for row in ROWS:
            sess.query(f"INSERT INTO t.items VALUES {sql_literal(row)}")
        rows = list(csv.reader(io.StringIO(str(sess.query(QUERY.format(table="t.items"), "CSV")))))
    finally:
        sess.close()
    parsed = [
        (int(i), name, Decimal(price), datetime.fromisoformat(ts), int(v)) for i, name, price, ts, v in rows
    ]
    assert parsed == EXPECTED_FINAL


@pytest.mark.stack
def test_a_row_the_server_refuses_is_dead_lettered_and_the_rest_stored(stack: Settings) -> None:
    """A fact_order column narrowed by hand (UInt8 quantity) makes the server's driver refuse a
    quantity of 300: that row alone is dead-lettered, every other row of every table is stored."""
    import asyncio

    from cdcapp.clickhouse.client import ClickHouse
    from cdcapp.clickhouse.ddl import table_shapes
    from cdcapp.model.messages import SinkRow
    from cdcapp.model.spec import load_spec
    from cdcapp.retry import Backoff
    from cdcapp.sink.buffer import SinkBuffer
    from cdcapp.sink.flush import Sink
    from cdcapp.sink.policy import FlushPolicy

    spec = load_spec()
    shapes = table_shapes(spec)
    db = f"cdcapp_test_{uuid.uuid4().hex[:12]}"
    clickhouse = ClickHouse(f"clickhouse://default@127.0.0.1:{stack.clickhouse_port}/{db}", spec, db)
    client = Client("127.0.0.1", port=stack.clickhouse_port)

    def row(table: str, i: int, **values: object) -> SinkRow:
        filled = {name: t.default for name, t in shapes[table].columns.items()}
        filled.update({"id": i, "_source": "pg", "_version": 1, "_is_deleted": 0, **values})
        return SinkRow(table, f"pg|{i}", filled, 0)

    refused: list[tuple[str, str, str]] = []

    async def dead_letter(table: str, key: str, values: dict, why: str) -> None:
        refused.append((table, key, why))

    async def ack(tokens: list[str]) -> None:
        pass

    async def run() -> None:
        await clickhouse.connect()
        client.execute(f"ALTER TABLE {db}.fact_order MODIFY COLUMN quantity UInt8")
        sink = Sink(clickhouse, SinkBuffer(shapes), FlushPolicy(10_000, 0.2), Backoff(0.05, 1), ack,
                    clock=lambda: 0.0, dead_letter=dead_letter)
        sink.add([row("fact_order", i, quantity=300 if i == 7 else i) for i in range(1, 41)]
                 + [row("dim_customer", i) for i in range(1, 6)], "record")
        await sink.flush()
        await clickhouse.close()

    try:
        asyncio.run(run())
        assert [(t, k) for t, k, _ in refused] == [("fact_order", "pg|7")]
        assert "ubyte format requires 0 <= number <= 255" in refused[0][2]
        assert client.execute(f"SELECT count() FROM {db}.fact_order") == [(39,)]
        assert client.execute(f"SELECT count() FROM {db}.dim_customer") == [(5,)]
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {db}")
        client.disconnect()


@pytest.mark.parametrize("engine", ["server", "chdb"])
def test_schema_sync_ddl_on_both_engines(engine: str, stack: Settings, tmp_path: Path) -> None:
    """What schema sync runs: ADD COLUMN with a hostile name, MODIFY COLUMN to a wider type, and
    the ``*_current`` view rebuilt and swapped in; rows from before hold the default."""
    from cdcapp.clickhouse.client import open_target, table_columns
    from cdcapp.clickhouse.ddl import TableShape, add_column, modify_column, replace_current_view, table_ddl
    from cdcapp.model.types import parse_type

    db = f"cdcapp_sync_{uuid.uuid4().hex[:10]}"
    url = (f"clickhouse://default@127.0.0.1:{stack.clickhouse_port}/{db}" if engine == "server"
           else f"chdb://{tmp_path / 'chdb'}")
    target = open_target(url, db)
    hostile = "x`; DROP TABLE d; --"
    base = TableShape("d", {"id": parse_type("Int64"), "points": parse_type("Int32"), "_source": parse_type("String"),
                            "_version": parse_type("UInt64"), "_is_deleted": parse_type("UInt8")}, ["_source", "id"],
                      True)
    try:
        for statement in [f"CREATE DATABASE IF NOT EXISTS {db}", *table_ddl(db, base)]:
            target.execute(statement)
        target.insert(base, [{"id": 1, "points": 5, "_source": "s", "_version": 1, "_is_deleted": 0}])
        target.execute(add_column(db, "d", hostile, parse_type("String")))
        target.execute(modify_column(db, "d", "points", parse_type("Int64")))
        wide = TableShape("d", {**base.columns, "points": parse_type("Int64"), hostile: parse_type("String")},
                          base.key, True, frozenset({hostile}))
        for statement in replace_current_view(db, wide, "t1"):
            target.execute(statement)
        target.insert(wide, [{"id": 2, "points": 5_000_000_000, hostile: "harmless", "_source": "s", "_version": 1,
                              "_is_deleted": 0}])
        assert table_columns(target, "d")[hostile] == "String"
        assert list(table_columns(target, "d_current")) == list(wide.columns)
        rows = target.query(f"SELECT id, points, `x\\`; DROP TABLE d; --` FROM {db}.d_current ORDER BY id")
        assert [list(map(str, r)) for r in rows] == [["1", "5", ""], ["2", "5000000000", "harmless"]]
        assert sorted(r[0] for r in target.query(f"SELECT name FROM system.tables WHERE database = '{db}'")) == [
            "d", "d_current"]
    finally:
        target.execute(f"DROP DATABASE IF EXISTS {db}")
        target.close()
