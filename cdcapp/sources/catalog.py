"""What a source's catalog says of one column: how schema sync types a column the source gained.

Debezium's events reach the workers without their Connect schema (``schemas.enable=false``: the
schema is about 5 KB per event, seven times the payload), so a column that appears in an event
is looked up where it was declared: ``information_schema.columns`` of PostgreSQL or MariaDB,
through the same connection settings ``verify`` uses. SQLite's relay puts each column's declared
type in its events instead (``cdcapp.model.sourcetypes.from_connect_field``).
"""

from __future__ import annotations

from cdcapp.config import Settings
from cdcapp.model.sourcetypes import SourceColumn
from cdcapp.sources.connections import connect

_POSTGRES_SQL = (
    "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
    "WHERE table_schema = %s AND table_name = %s"
)
_MARIADB_SQL = (
    "SELECT column_name, data_type, numeric_precision, numeric_scale, column_type FROM information_schema.columns "
    "WHERE table_schema = %s AND table_name = %s"
)


def source_columns(connector: str, settings: Settings, schema: str | None, table: str) -> dict[str, SourceColumn]:
    """The columns of ``schema.table`` now; ``connector`` is Debezium's name of the source kind."""
    if connector == "postgresql":
        with connect("postgres", settings) as conn:
            rows = conn.execute(_POSTGRES_SQL, (schema or "public", table)).fetchall()
        return {name: SourceColumn(name, data_type, precision, scale) for name, data_type, precision, scale in rows}
    if connector in ("mariadb", "mysql"):
        conn = connect("mariadb", settings)
        try:
            with conn.cursor() as cursor:
                cursor.execute(_MARIADB_SQL, (schema or settings.mariadb_db, table))
                rows = cursor.fetchall()
        finally:
            conn.close()
        return {name: SourceColumn(name, data_type, precision, scale, "unsigned" in column_type.lower())
                for name, data_type, precision, scale, column_type in rows}
    raise LookupError(f"no catalog for {connector!r} sources: their events must carry a Connect schema with "
                      "the source types (Debezium's column.propagate.source.type)")
