"""The sink's buffer: the latest row per ClickHouse key and table, with the tokens to acknowledge
once they are stored.

Rows of one key arrive in order through one sink partition, with versions that never go down, so
a row replaces the buffered row of its key unless it is older: one insert carries one row per key,
the one ReplacingMergeTree would keep, whatever order ClickHouse sorts an insert block in.
Tokens are opaque (the runtime puts Faust events in; tests put anything), so the buffer, the
flush policy and the flush itself are testable without Kafka or Faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cdcapp.clickhouse.ddl import TableShape
from cdcapp.model.messages import UNAVAILABLE_MARK, SinkRow

Token = TypeVar("Token")


class BadSinkRow(ValueError):
    """A sink row that no ClickHouse table of the spec can take; the text says why."""


class UnknownColumns(BadSinkRow):
    """A row of a mirrored table with columns its shape lacks: schema sync has added them since
    the shape was read (``SchemaSync.refresh``), or they cannot be stored."""

    def __init__(self, table: str, columns: list[str]) -> None:
        super().__init__(f"row for {table} has columns {columns} that the table does not have")
        self.table = table
        self.columns = columns


@dataclass
class Batch(Generic[Token]):
    tables: list[tuple[TableShape, list[dict[str, Any]]]]
    #: the entity key of each row of ``tables``, table by table
    keys: list[list[str]]
    #: source commit times (``source.ts_ms``) of the rows, table by table, for the end-to-end lag
    timestamps: list[list[int]]
    tokens: list[Token]
    #: rows received, before the newest per key was kept
    received: int = 0

    @property
    def rows(self) -> int:
        return sum(len(rows) for _, rows in self.tables)


@dataclass
class SinkBuffer(Generic[Token]):
    shapes: dict[str, TableShape]
    rows: dict[str, dict[str, tuple[dict[str, Any], int]]] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    received: int = 0
    size: int = 0

    def check(self, row: SinkRow) -> TableShape:
        shape = self.shapes.get(row.table)
        if shape is None:
            raise BadSinkRow(f"unknown table {row.table!r}")
        missing = [c for c in shape.columns if c not in row.row and c not in shape.extra]
        if missing:
            raise BadSinkRow(f"row for {shape.name} lacks columns {missing}")
        if shape.mirrored and not row.row.keys() <= shape.columns.keys():
            raise UnknownColumns(shape.name, [c for c in row.row if c not in shape.columns])
        return shape

    def add(self, rows: list[SinkRow], token: Token) -> None:
        """Rows of one record, all or none (``BadSinkRow`` names the first that cannot be stored)."""
        for row in rows:
            self.check(row)
        for row in rows:
            table = self.rows.setdefault(row.table, {})
            held = table.get(row.key)
            if held is None:
                self.size += 1
            elif held[0]["_version"] > row.row["_version"]:
                continue
            table[row.key] = (row.row, row.ts_ms)
        self.received += len(rows)
        self.tokens.append(token)

    def __len__(self) -> int:
        return self.size

    def take(self) -> Batch[Token]:
        tables = [(self.shapes[name], [row for row, _ in rows.values()]) for name, rows in self.rows.items()]
        for shape, rows in tables:
            if shape.extra:
                _fill_extra(shape, rows)
        keys = [list(rows) for rows in self.rows.values()]
        timestamps = [[ts for _, ts in rows.values()] for rows in self.rows.values()]
        batch = Batch(tables, keys, timestamps, self.tokens, self.received)
        self.rows, self.tokens, self.received, self.size = {}, [], 0, 0
        return batch


def _fill_extra(shape: TableShape, rows: list[dict[str, Any]]) -> None:
    """Columns schema sync added hold their default in a row without a value for them: rows from
    before the column existed, rows whose source no longer has it, and NULLs (ClickHouse columns
    here are not Nullable)."""
    defaults = {column: shape.columns[column].default for column in shape.extra}
    for row in rows:
        for column, default in defaults.items():
            value = row.get(column)
            if value is None or value == UNAVAILABLE_MARK:
                row[column] = default
