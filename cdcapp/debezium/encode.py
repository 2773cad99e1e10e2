"""Debezium change event values, as JsonConverter writes them.

The SQLite relay's envelope: SQLite has no Debezium connector, so the relay writes what one
would, and :mod:`cdcapp.debezium.decode` reads it like the other sources' events. Pure: no
I/O and no clock, the caller supplies every value, the publish time included.

With ``schema`` (``connect_schema``), the event is JsonConverter's schema envelope, and each
column's field names its declared SQLite type the way Debezium's ``column.propagate.source.type``
does: that is how schema sync types a column the table gains (``cdcapp.model.sourcetypes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cdcapp
from cdcapp.model.sourcetypes import split_declared

CONNECTOR = "sqlite"


def build_envelope(
    *,
    table: str,
    op: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source_id: str,
    db_name: str,
    seq: int,
    change_ts_ms: int,
    snapshot: bool,
    publish_ts_ms: int,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Debezium change event value, in JsonConverter's schema envelope when ``schema`` is given."""
    payload = {
        "before": before,
        "after": after,
        "op": op,
        "ts_ms": publish_ts_ms,
        "source": {
            "version": cdcapp.__version__,
            "connector": CONNECTOR,
            "name": source_id,
            "ts_ms": change_ts_ms,
            "db": db_name,
            "table": table,
            "seq": seq,
            "snapshot": "true" if snapshot else "false",
        },
    }
    return payload if schema is None else {"schema": schema, "payload": payload}


def _connect_type(declared: str) -> str:
    # SQLite's affinity (https://sqlite.org/datatype3.html, 3.1) says what JSON value a column gives.
    lowered = declared.lower()
    if "int" in lowered:
        return "int64"
    if any(word in lowered for word in ("real", "floa", "doub")):
        return "double"
    return "string"


def connect_schema(source_id: str, table: str, columns: Sequence[str], types: Sequence[str],
                   key: Sequence[str]) -> dict[str, Any]:
    """The Connect schema of a table's change events; fields carry the declared column types."""
    fields = []
    for column, declared in zip(columns, types):
        name, length, scale = split_declared(declared)
        parameters = {"__debezium.source.column.type": name.upper()}
        if length is not None:
            parameters["__debezium.source.column.length"] = str(length)
        if scale is not None:
            parameters["__debezium.source.column.scale"] = str(scale)
        fields.append({"type": _connect_type(declared), "optional": column not in key, "field": column,
                       "parameters": parameters})
    row = {"type": "struct", "fields": fields, "optional": True, "name": f"{source_id}.{table}.Value"}
    return {
        "type": "struct",
        "name": f"{source_id}.{table}.Envelope",
        "optional": False,
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {"type": "struct", "field": "source", "optional": False, "name": "io.cdcapp.sqlite.Source",
             "fields": [{"type": "string", "optional": False, "field": f} for f in ("connector", "name", "table")]},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }
