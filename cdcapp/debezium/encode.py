"""Debezium change event values, as JsonConverter writes them with schemas disabled.

The SQLite relay's envelope: SQLite has no Debezium connector, so the relay writes what one
would, and :mod:`cdcapp.debezium.decode` reads it like the other sources' events. Pure: no
I/O and no clock, the caller supplies every value, the publish time included.
"""

from __future__ import annotations

from typing import Any

import cdcapp

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
) -> dict[str, Any]:
    """A Debezium change event value, as JsonConverter writes it with schemas disabled."""
    return {
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
