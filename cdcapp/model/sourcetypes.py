"""Source column types -> ClickHouse column types, and which type changes ClickHouse can follow.

A column that appears in a source table after the spec was written (schema sync of a mirrored
dimension) gets its ClickHouse type from the source's own type name: PostgreSQL's and MariaDB's
``information_schema`` names, or SQLite's declared type, as the SQLite relay also puts it in each
event's Connect schema (Debezium's ``__debezium.source.column.type`` parameters).

Only types both ClickHouse engines store are produced (``cdcapp.model.types``); a source type
with no exact counterpart (PostgreSQL ``numeric`` without a precision, ``json``, ``uuid``,
``interval``...) maps to ``String``, which takes any value as text.

``widens(old, new)``: whether every value of ``old`` is a value of ``new``, so that ClickHouse's
``ALTER TABLE ... MODIFY COLUMN`` keeps the rows it holds exact (INT to BIGINT, a larger
DECIMAL precision). Anything else (a narrower or a different kind of type) is not followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cdcapp.model.types import ColumnType, parse_type

_STRING = parse_type("String")
_PRECISION = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


@dataclass(frozen=True, slots=True)
class SourceColumn:
    """A column as the source's catalog describes it."""

    name: str
    type_name: str
    precision: int | None = None
    scale: int | None = None
    unsigned: bool = False


def _decimal(precision: int | None, scale: int | None) -> ColumnType:
    if precision is None or not 0 < precision <= 38:
        return _STRING  # unbounded or too wide for ClickHouse's Decimal: exact as text
    return parse_type(f"Decimal({precision}, {scale or 0})")


def _int(bits: int, unsigned: bool) -> ColumnType:
    return parse_type(f"{'U' if unsigned else ''}Int{bits}")


_POSTGRES = {
    "smallint": "Int16", "int2": "Int16", "smallserial": "Int16",
    "integer": "Int32", "int": "Int32", "int4": "Int32", "serial": "Int32",
    "bigint": "Int64", "int8": "Int64", "bigserial": "Int64",
    "real": "Float32", "float4": "Float32", "double precision": "Float64", "float8": "Float64",
    "boolean": "UInt8", "bool": "UInt8",
    "date": "Date",
    "timestamp": "DateTime", "timestamp without time zone": "DateTime",
    "timestamp with time zone": "DateTime", "timestamptz": "DateTime",
}
_MARIADB_INTS = {"tinyint": 8, "smallint": 16, "mediumint": 32, "int": 32, "integer": 32, "bigint": 64}
_MARIADB = {
    "float": "Float32", "double": "Float64", "real": "Float64", "double precision": "Float64",
    "date": "Date", "datetime": "DateTime", "timestamp": "DateTime", "year": "Int16",
}


def to_clickhouse(dialect: str, column: SourceColumn) -> ColumnType:
    """``dialect``: ``postgresql``, ``mariadb``/``mysql`` or ``sqlite`` (Debezium's connector names)."""
    name = column.type_name.strip().lower()
    if dialect == "sqlite":
        return _sqlite(name, column.precision, column.scale)
    base = name.split("(")[0].strip()
    if base in ("numeric", "decimal", "dec", "fixed"):
        return _decimal(column.precision, column.scale)
    if dialect == "postgresql":
        return parse_type(_POSTGRES[base]) if base in _POSTGRES else _STRING
    if dialect in ("mariadb", "mysql"):
        if base in _MARIADB_INTS:
            return _int(_MARIADB_INTS[base], column.unsigned or "unsigned" in name)
        if base in ("bool", "boolean"):
            return parse_type("Int8")
        return parse_type(_MARIADB[base]) if base in _MARIADB else _STRING
    return _STRING


def split_declared(declared: str) -> tuple[str, int | None, int | None]:
    """SQLite's declared type "DECIMAL(8, 3)" -> ("DECIMAL", 8, 3), as Debezium's column
    parameters name a type: its name, its length (precision) and its scale."""
    match = _PRECISION.search(declared)
    if match is None:
        return declared.strip(), None, None
    return declared[:match.start()].strip(), int(match[1]), int(match[2]) if match[2] is not None else None


def _sqlite(declared: str, precision: int | None, scale: int | None) -> ColumnType:
    """SQLite's affinity rules (https://sqlite.org/datatype3.html, 3.1), made exact where the
    declared type says more: DECIMAL(P, S), DATE, DATETIME."""
    if precision is None:
        declared, precision, scale = split_declared(declared)
    if "int" in declared:
        return parse_type("Int64")
    if any(word in declared for word in ("char", "clob", "text")) or not declared or "blob" in declared:
        return _STRING
    if any(word in declared for word in ("real", "floa", "doub")):
        return parse_type("Float64")
    if declared.startswith(("decimal", "numeric")):
        return _decimal(precision, scale)
    if "datetime" in declared or "timestamp" in declared:
        return parse_type("DateTime")
    if declared == "date":
        return parse_type("Date")
    if declared.startswith("bool"):
        return parse_type("UInt8")
    return _STRING


def from_connect_field(dialect: str, field: dict[str, Any]) -> ColumnType | None:
    """The type of a column from its Connect schema field, when the field names its source type
    (Debezium's ``column.propagate.source.type``, which the SQLite relay always writes)."""
    parameters = field.get("parameters") or {}
    type_name = parameters.get("__debezium.source.column.type")
    if not isinstance(type_name, str):
        return None
    length = parameters.get("__debezium.source.column.length")
    scale = parameters.get("__debezium.source.column.scale")
    return to_clickhouse(dialect, SourceColumn(str(field.get("field")), type_name,
                                               int(length) if length is not None else None,
                                               int(scale) if scale is not None else None))


def _integer_digits(t: ColumnType) -> int:
    return len(str(max(abs(t.low), t.high)))


def widens(old: ColumnType, new: ColumnType) -> bool:
    """Every value ``old`` holds, ``new`` holds exactly."""
    if old.name == new.name:
        return True
    if old.kind == "int" and new.kind == "int":
        return new.low <= old.low and new.high >= old.high
    if old.kind == "int" and new.kind == "decimal":
        return new.precision - new.scale >= _integer_digits(old)
    if old.kind == "decimal" and new.kind == "decimal":
        return new.scale >= old.scale and new.precision - new.scale >= old.precision - old.scale
    if old.kind == "float" and new.kind == "float":
        return old.name == "Float32"
    return False
