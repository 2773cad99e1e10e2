"""The sink buffer keeps the newest row per ClickHouse key, and every token until the flush."""

from __future__ import annotations

import pytest

from cdcapp.clickhouse.ddl import table_shapes
from cdcapp.model.messages import SinkRow
from cdcapp.model.spec import load_spec
from cdcapp.sink.buffer import BadSinkRow, SinkBuffer

SHAPES = table_shapes(load_spec())


def customer(i: int, version: int, city: str = "x", deleted: int = 0) -> SinkRow:
    row = {"id": i, "email": "e", "name": "n", "country": "c", "city": city, "created_at": "2024-01-01 00:00:00",
           "_source": "pg", "_version": version, "_is_deleted": deleted}
    return SinkRow("dim_customer", f"pg|{i}", row, version)


def test_rows_of_one_key_coalesce_to_the_newest_and_ties_to_the_last() -> None:
    buffer: SinkBuffer[str] = SinkBuffer(SHAPES)
    buffer.add([customer(1, 5, "a"), customer(2, 1)], "r1")
    buffer.add([customer(1, 7, "b")], "r2")
    buffer.add([customer(1, 6, "older")], "r3")
    buffer.add([customer(1, 7, "c", deleted=1)], "r4")
    assert len(buffer) == 2
    batch = buffer.take()
    (shape, rows), = batch.tables
    assert shape.name == "dim_customer"
    assert {r["id"]: (r["city"], r["_is_deleted"]) for r in rows} == {1: ("c", 1), 2: ("x", 0)}
    assert batch.tokens == ["r1", "r2", "r3", "r4"] and batch.received == 5 and batch.rows == 2
    assert len(buffer) == 0 and not buffer.tokens


def test_a_record_with_a_bad_row_is_refused_whole() -> None:
    buffer: SinkBuffer[str] = SinkBuffer(SHAPES)
    bad = SinkRow("nope", "pg|1", {}, 0)
    with pytest.raises(BadSinkRow, match="unknown table 'nope'"):
        buffer.add([customer(1, 1), bad], "r1")
    assert len(buffer) == 0 and not buffer.tokens
