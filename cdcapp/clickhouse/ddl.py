"""ClickHouse DDL derived from the spec, in the subset both ClickHouse 18.16 and chdb accept.

Every table is ``ReplacingMergeTree(_version)`` ordered by ``(_source, <source key>)``: the source
column leads the key so that two OLTP databases feeding one ClickHouse never collide, and
ReplacingMergeTree deduplicates within a partition only, so the tables are not partitioned by
any column that can change. ``<table>_current`` views hide FINAL and deleted rows.

Every identifier goes through ``quote``: names from a source (schema sync) are checked first
(``check_identifier``) and then backquoted with ClickHouse's escapes, so a column named
``x`; DROP TABLE fact_order; --`` is a column of that name and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdcapp.model.spec import Spec
from cdcapp.model.types import ColumnType, parse_type

META_COLUMNS: dict[str, ColumnType] = {
    "_source": parse_type("String"),
    "_version": parse_type("UInt64"),
    "_is_deleted": parse_type("UInt8"),
}


class BadIdentifier(ValueError):
    """A name no ClickHouse table or column should get."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: ClickHouse keeps a column's name in file names of its parts; longer names fail on most file systems.
MAX_IDENTIFIER = 200


def check_identifier(name: str) -> str:
    if not isinstance(name, str) or not name or len(name.encode()) > MAX_IDENTIFIER or _CONTROL.search(name):
        raise BadIdentifier(f"{name!r} is not a usable ClickHouse column name (empty, longer than "
                            f"{MAX_IDENTIFIER} bytes, or holding control characters)")
    return name


def quote(name: str) -> str:
    """A backquoted identifier: backslashes and backquotes escaped, as ClickHouse reads them."""
    return "`" + check_identifier(name).replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True, slots=True)
class TableShape:
    name: str
    columns: dict[str, ColumnType]  # data columns, then META_COLUMNS
    key: list[str]
    #: mirrors its source table (``columns: all``): columns the source gains are added to it
    mirrored: bool = False
    #: data columns that are not the spec's (added by schema sync): a row without one gets its default
    extra: frozenset[str] = field(default_factory=frozenset)

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
        shapes[dim.table] = TableShape(dim.table, columns, ["_source", *entity.key], dim.columns == "all")
    for fact in spec.facts:
        columns = {name: spec.resolve_path(fact.entity, path)[2] for name, path in fact.columns.items()}
        columns.update({name: parse_type(m.type) for name, m in fact.measures.items()})
        root_key = spec.entities[fact.entity].key
        key = [name for name, path in fact.columns.items() if path in root_key]
        shapes[fact.table] = TableShape(fact.table, {**columns, **META_COLUMNS}, ["_source", *key])
    return shapes


def ddl(spec: Spec, db: str) -> list[str]:
    statements = [f"CREATE DATABASE IF NOT EXISTS {quote(db)}"]
    for shape in table_shapes(spec).values():
        statements.extend(table_ddl(db, shape))
    return statements


def table_ddl(db: str, shape: TableShape) -> list[str]:
    """The table and its ``*_current`` view, created where missing."""
    columns = ",\n  ".join(f"{quote(name)} {t.name}" for name, t in shape.columns.items())
    return [
        f"CREATE TABLE IF NOT EXISTS {quote(db)}.{quote(shape.name)} (\n  {columns}\n)"
        f" ENGINE = ReplacingMergeTree(_version) ORDER BY ({', '.join(quote(c) for c in shape.key)})",
        f"CREATE VIEW IF NOT EXISTS {quote(db)}.{quote(shape.current_view)} AS {_current(db, shape)}",
    ]


def _current(db: str, shape: TableShape) -> str:
    return f"SELECT * FROM {quote(db)}.{quote(shape.name)} FINAL WHERE _is_deleted = 0"


def add_column(db: str, table: str, column: str, column_type: ColumnType) -> str:
    return f"ALTER TABLE {quote(db)}.{quote(table)} ADD COLUMN {quote(column)} {column_type.name}"


def modify_column(db: str, table: str, column: str, column_type: ColumnType) -> str:
    return f"ALTER TABLE {quote(db)}.{quote(table)} MODIFY COLUMN {quote(column)} {column_type.name}"


def replace_current_view(db: str, shape: TableShape, suffix: str) -> list[str]:
    """Statements that give ``<table>_current`` the table's columns as they are now.

    A ClickHouse view keeps the columns it had when created (both engines), so after an ALTER it
    is built again: next to the old one, then swapped in by one RENAME (no moment without a view;
    ``CREATE OR REPLACE VIEW`` is newer than the 18.16 server), and the old one dropped.
    ``suffix`` keeps two workers doing this at once apart.
    """
    view, new, old = (quote(f"{shape.current_view}{part}") for part in ("", f".new.{suffix}", f".old.{suffix}"))
    return [
        f"CREATE VIEW {quote(db)}.{new} AS {_current(db, shape)}",
        f"RENAME TABLE {quote(db)}.{view} TO {quote(db)}.{old}, {quote(db)}.{new} TO {quote(db)}.{view}",
        f"DROP TABLE {quote(db)}.{old}",
    ]
