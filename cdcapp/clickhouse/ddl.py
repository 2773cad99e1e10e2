"""ClickHouse DDL derived from the spec, in the subset both ClickHouse 18.16 and chdb accept.

Every table is ``ReplacingMergeTree(_version)`` ordered by ``(_source, <source key>)``: the source
column leads the key so that two OLTP databases feeding one ClickHouse never collide, and
ReplacingMergeTree deduplicates within a partition only, so the tables are not partitioned by
any column that can change. ``<table>_current`` views hide FINAL and deleted rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdcapp.model.spec import Spec
from cdcapp.model.types import ColumnType, parse_type

META_COLUMNS: dict[str, ColumnType] = {
    "_source": parse_type("String"),
    "_version": parse_type("UInt64"),
    "_is_deleted": parse_type("UInt8"),
}


@dataclass(frozen=True, slots=True)
class TableShape:
    name: str
    columns: dict[str, ColumnType]  # data columns, then META_COLUMNS
    key: list[str]

    @property
    def current_view(self) -> str:
        return f"{self.name}_current"

    @property
    def data_columns(self) -> list[str]:
        return [c for c in self.columns if c not in META_COLUMNS]


def table_shapes(spec: Spec) -> dict[str, TableShape]:
    shapes: dict[str, TableShape] = {}
    for dim in spec.dimensions:
        entity = spec.entities[dim.entity]
        columns = {**spec.column_types(dim.entity), **META_COLUMNS}
        shapes[dim.table] = TableShape(dim.table, columns, ["_source", *entity.key])
    for fact in spec.facts:
        columns = {name: spec.resolve_path(fact.entity, path)[2] for name, path in fact.columns.items()}
        columns.update({name: parse_type(m.type) for name, m in fact.measures.items()})
        root_key = spec.entities[fact.entity].key
        key = [name for name, path in fact.columns.items() if path in root_key]
        shapes[fact.table] = TableShape(fact.table, {**columns, **META_COLUMNS}, ["_source", *key])
    return shapes


def ddl(spec: Spec, db: str) -> list[str]:
    statements = [f"CREATE DATABASE IF NOT EXISTS {db}"]
    for shape in table_shapes(spec).values():
        columns = ",\n  ".join(f"`{name}` {t.name}" for name, t in shape.columns.items())
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {db}.{shape.name} (\n  {columns}\n)"
            f" ENGINE = ReplacingMergeTree(_version) ORDER BY ({', '.join(shape.key)})"
        )
        statements.append(
            f"CREATE VIEW IF NOT EXISTS {db}.{shape.current_view} AS "
            f"SELECT * FROM {db}.{shape.name} FINAL WHERE _is_deleted = 0"
        )
    return statements
