"""The sink's two kinds of insert errors: retried (unavailable) and dead-lettered (refused data),
over a writer that behaves as ClickHouse does per table (the integration suite uses the server)."""

from __future__ import annotations

from typing import Any

from cdcapp.clickhouse.client import is_data_error
from cdcapp.clickhouse.ddl import TableShape, table_shapes
from cdcapp.model.messages import SinkRow
from cdcapp.model.spec import load_spec
from cdcapp.retry import Backoff
from cdcapp.sink.buffer import SinkBuffer
from cdcapp.sink.flush import Sink
from cdcapp.sink.policy import FlushPolicy

SHAPES = table_shapes(load_spec())


def customer(i: int) -> SinkRow:
    row = {"id": i, "email": "e", "name": "n", "country": "c", "city": "x", "created_at": "2024-01-01 00:00:00",
           "_source": "pg", "_version": 1, "_is_deleted": 0}
    return SinkRow("dim_customer", f"pg|{i}", row, 0)


def product(i: int) -> SinkRow:
    row = {"id": i, "name": "p", "category": "c", "price": "1.00", "created_at": "2024-01-01 00:00:00",
           "_source": "pg", "_version": 1, "_is_deleted": 0}
    return SinkRow("dim_product", f"pg|{i}", row, 0)


class Table:
    """Stores rows per table; refuses a row whose id is poisoned, and is down for some calls."""

    def __init__(self, poisoned: set[int], down: int = 0, down_for: str = "") -> None:
        self.poisoned, self.down, self.down_for = poisoned, down, down_for
        self.stored: dict[str, list[int]] = {}
        self.calls: list[tuple[str, int]] = []

    def is_data_error(self, exc: BaseException) -> bool:
        return isinstance(exc, ValueError)

    async def insert(self, batches: list[tuple[TableShape, list[dict[str, Any]]]]) -> None:
        (shape, rows), = batches  # the sink inserts one table at a time
        self.calls.append((shape.name, len(rows)))
        if self.down and shape.name == self.down_for:
            self.down -= 1
            raise ConnectionError("ClickHouse is down")
        if any(r["id"] in self.poisoned for r in rows):
            raise ValueError("Code: 6. Cannot parse")
        self.stored.setdefault(shape.name, []).extend(r["id"] for r in rows)


def sink_over(table: Table, refused: list[tuple[str, str, str]]) -> Sink[str]:
    async def ack(tokens: list[str]) -> None:
        pass

    async def sleep(seconds: float) -> None:
        pass

    async def dead_letter(name: str, key: str, row: dict, why: str) -> None:
        refused.append((name, key, why))

    return Sink(table, SinkBuffer(SHAPES), FlushPolicy(10_000, 0.2), Backoff(0.2, 30), ack,
                clock=lambda: 0.0, sleep=sleep, dead_letter=dead_letter)


async def test_refused_rows_are_dead_lettered_alone_and_every_other_row_is_stored() -> None:
    table, refused = Table(poisoned={3, 11}), []
    sink = sink_over(table, refused)
    sink.add([customer(i) for i in range(16)] + [product(1)], "e1")
    flushed = await sink.flush()
    assert sorted(table.stored["dim_customer"]) == [i for i in range(16) if i not in (3, 11)]
    assert table.stored["dim_product"] == [1]
    assert refused == [("dim_customer", "pg|3", "ValueError: Code: 6. Cannot parse"),
                       ("dim_customer", "pg|11", "ValueError: Code: 6. Cannot parse")]
    assert flushed is not None and sink.rows_inserted == 15 and sink.rows_refused == 2


async def test_a_retry_resumes_with_the_table_that_failed() -> None:
    table, refused = Table(poisoned=set(), down=2, down_for="dim_product"), []
    sink = sink_over(table, refused)
    sink.add([customer(1), product(1)], "e1")
    await sink.flush()
    assert table.calls == [("dim_customer", 1), ("dim_product", 1), ("dim_product", 1), ("dim_product", 1)]
    assert table.stored == {"dim_customer": [1], "dim_product": [1]} and not refused


def test_clickhouse_errors_are_told_apart() -> None:
    from clickhouse_driver import errors

    assert is_data_error(errors.ServerException("Cannot parse", 6))
    assert is_data_error(errors.TypeMismatchError("bad"))
    assert is_data_error(RuntimeError("Code: 27. DB::Exception: Cannot parse input"))  # chdb
    assert is_data_error(OverflowError("int too big to convert"))
    assert not is_data_error(errors.NetworkError("down"))
    assert not is_data_error(errors.ServerException("Too many parts", 252))
    assert not is_data_error(ConnectionRefusedError("refused"))
    assert not is_data_error(RuntimeError("chdb session closed"))
