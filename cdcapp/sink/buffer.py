"""The sink's buffer: rows per ClickHouse table, with the tokens to acknowledge once they are stored.

Tokens are opaque (the runtime puts Faust events in; tests put anything), so the buffer, the flush
policy and the flush itself are testable without Kafka or Faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cdcapp.clickhouse.ddl import TableShape
from cdcapp.model.messages import SinkRow

Token = TypeVar("Token")


class BadSinkRow(ValueError):
    """A sink row that no ClickHouse table of the spec can take; the text says why."""


@dataclass
class Batch(Generic[Token]):
    tables: list[tuple[TableShape, list[dict[str, Any]]]]
    #: source commit times (``source.ts_ms``) of the rows, for the end-to-end lag
    timestamps: list[int]
    tokens: list[Token]

    @property
    def rows(self) -> int:
        return sum(len(rows) for _, rows in self.tables)


@dataclass
class SinkBuffer(Generic[Token]):
    shapes: dict[str, TableShape]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timestamps: list[int] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)

    def check(self, row: SinkRow) -> TableShape:
        shape = self.shapes.get(row.table)
        if shape is None:
            raise BadSinkRow(f"unknown table {row.table!r}")
        missing = [c for c in shape.columns if c not in row.row]
        if missing:
            raise BadSinkRow(f"row for {shape.name} lacks columns {missing}")
        return shape

    def add(self, row: SinkRow, token: Token) -> None:
        shape = self.check(row)
        self.rows.setdefault(shape.name, []).append(row.row)
        self.timestamps.append(row.ts_ms)
        self.tokens.append(token)

    def __len__(self) -> int:
        return len(self.tokens)

    def take(self) -> Batch[Token]:
        batch = Batch([(self.shapes[name], rows) for name, rows in self.rows.items()], self.timestamps, self.tokens)
        self.rows, self.timestamps, self.tokens = {}, [], []
        return batch
