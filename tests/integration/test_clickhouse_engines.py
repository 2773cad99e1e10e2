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
    clickhouse = ClickHouse(f"clickhouse://default@127.0.0.1:{stack.clickhouse_port}/{db}", spec)
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
