"""SQLite change capture, inside the database: triggers append every row change to a log.

SQLite has no replication stream for Debezium to read, so capture happens inside the
database. AFTER INSERT/UPDATE/DELETE triggers append each row change to ``_cdc_log`` in the
same transaction as the change: a rolled-back transaction leaves nothing, a committed one
cannot lose its log rows. The triggers are generated from ``PRAGMA table_info`` at install
time (``install`` again after altering a captured table). An update that changes the primary
key is logged as a delete of the old key and a create of the new one, as Debezium does.

Limits: ``INSERT OR REPLACE`` removes conflicting rows without firing delete triggers
(unless the application enables ``recursive_triggers``); ``WITHOUT ROWID`` tables work,
tables without a declared primary key are refused.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdcapp.sources.connections import connect_sqlite, immediate_transaction

log = logging.getLogger(__name__)

DEFAULT_TABLES = ("customers", "products", "orders", "order_items")
LOG_TABLE = "_cdc_log"
STATE_TABLE = "_cdc_state"
#: the change log's last sequence number, kept by ``uninstall`` so that a later ``install``
#: continues it: positions that restarted at 1 would order a row's new changes below the ones the
#: pipeline already holds, and it would drop them as stale
SEQ_TABLE = "_cdc_seq"
TRIGGER_PREFIX = "_cdc_"

# Exact milliseconds; julianday() arithmetic would round through a double.
_NOW_MS_SQL = "(CAST(strftime('%s','now') AS INTEGER) * 1000 + CAST(substr(strftime('%f','now'), 4) AS INTEGER))"

_LOG_DDL = f"""
CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl    TEXT    NOT NULL,
    op     TEXT    NOT NULL CHECK (op IN ('c', 'u', 'd')),
    pk     TEXT    NOT NULL,
    before TEXT,
    after  TEXT,
    ts_ms  INTEGER NOT NULL
)"""

_STATE_DDL = f"""
CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    source_id     TEXT    NOT NULL,
    tables        TEXT    NOT NULL,
    snapshot_done INTEGER NOT NULL,
    snapshot_seq  INTEGER NOT NULL,
    published_seq INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
)"""

_SEQ_DDL = f"CREATE TABLE IF NOT EXISTS {SEQ_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)"


class CaptureError(RuntimeError):
    pass


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    #: each column's declared type, as ``PRAGMA table_info`` gives it
    types: tuple[str, ...] = ()

    def image_sql(self, alias: str = "") -> str:
        """``json_object(...)`` of the whole row, as stored in the log and sent as before/after."""
        return self._json_object(self.columns, alias)

    def key_sql(self, alias: str = "") -> str:
        return self._json_object(self.key, alias)

    @staticmethod
    def _json_object(columns: Iterable[str], alias: str) -> str:
        """SQLite's JSON refuses BLOBs (and with it the application's own write, inside its
        trigger), so bytes travel as hex, as Debezium's ``binary.handling.mode=hex`` sends them;
        any column may hold one, whatever its declared type."""
        prefix = f"{alias}." if alias else ""
        values = (f"{prefix}{quote_ident(c)}" for c in columns)
        return "json_object(" + ", ".join(
            f"{_literal(c)}, CASE typeof({v}) WHEN 'blob' THEN hex({v}) ELSE {v} END" for c, v in zip(columns, values)
        ) + ")"


def read_table_info(conn: sqlite3.Connection, table: str) -> TableInfo:
    rows = conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
    if not rows:
        raise CaptureError(f"no table {table!r} in the database")
    key = tuple(name for *_, name in sorted((pk, name) for _, name, _, _, _, pk in rows if pk))
    if not key:
        raise CaptureError(f"table {table!r} has no primary key; capture needs one to key its events")
    return TableInfo(table, tuple(r[1] for r in rows), key, tuple(r[2] for r in rows))


def _log_insert(info: TableInfo, op: str, key_alias: str, before: str | None, after: str | None) -> str:
    return (
        f"INSERT INTO {LOG_TABLE} (tbl, op, pk, before, after, ts_ms) VALUES ("
        f"{_literal(info.name)}, '{op}', {info.key_sql(key_alias)}, "
        f"{info.image_sql(before) if before else 'NULL'}, {info.image_sql(after) if after else 'NULL'}, "
        f"{_NOW_MS_SQL});"
    )


_TRIGGER_SUFFIXES = ("insert", "update", "rekey", "delete")


def _trigger_name(table: str, suffix: str) -> str:
    return f"{TRIGGER_PREFIX}{table}_{suffix}"


def trigger_sql(info: TableInfo) -> list[str]:
    """The four capture triggers, in ``_TRIGGER_SUFFIXES`` order."""
    t = quote_ident(info.name)
    same_key = " AND ".join(f"OLD.{quote_ident(c)} IS NEW.{quote_ident(c)}" for c in info.key)

    def name(suffix: str) -> str:
        return quote_ident(_trigger_name(info.name, suffix))

    return [
        f"CREATE TRIGGER {name('insert')} AFTER INSERT ON {t} BEGIN "
        f"{_log_insert(info, 'c', 'NEW', None, 'NEW')} END",
        f"CREATE TRIGGER {name('update')} AFTER UPDATE ON {t} WHEN {same_key} BEGIN "
        f"{_log_insert(info, 'u', 'NEW', 'OLD', 'NEW')} END",
        f"CREATE TRIGGER {name('rekey')} AFTER UPDATE ON {t} WHEN NOT ({same_key}) BEGIN "
        f"{_log_insert(info, 'd', 'OLD', 'OLD', None)} {_log_insert(info, 'c', 'NEW', None, 'NEW')} END",
        f"CREATE TRIGGER {name('delete')} AFTER DELETE ON {t} BEGIN "
        f"{_log_insert(info, 'd', 'OLD', 'OLD', None)} END",
    ]


def _capture_triggers(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(trigger, table) of every capture trigger: those that write to the change log."""
    return conn.execute(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name GLOB ? AND sql LIKE ?",
        (f"{TRIGGER_PREFIX}*", f"%{LOG_TABLE}%"),
    ).fetchall()


def open_existing(db: Path) -> sqlite3.Connection:
    # sqlite3 would create an empty database for a mistyped path.
    if not Path(db).is_file():
        raise CaptureError(f"no database at {db}")
    return connect_sqlite(db)


def install(db: Path, tables: Sequence[str] = DEFAULT_TABLES) -> list[TableInfo]:
    """Create the log and state tables and (re)create the triggers of exactly ``tables``.

    One write transaction, so the application's changes are either all before the
    triggers exist (and the snapshot covers them) or all captured.
    """
    conn = open_existing(db)
    try:
        with immediate_transaction(conn):
            infos = [read_table_info(conn, t) for t in tables]
            conn.execute(_LOG_DDL)
            conn.execute(_STATE_DDL)
            conn.execute(_SEQ_DDL)
            conn.execute(
                f"INSERT INTO sqlite_sequence (name, seq) SELECT ?, seq FROM {SEQ_TABLE} WHERE id = 1 "
                "AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)", (LOG_TABLE, LOG_TABLE),
            )
            stored = _stored_triggers(conn)
            for trigger, _ in _capture_triggers(conn):
                conn.execute(f"DROP TRIGGER {quote_ident(trigger)}")
            for info in infos:
                for statement in trigger_sql(info):
                    conn.execute(statement)
                if _altered(info, stored):
                    _log_all_rows(conn, info)  # altered while nothing followed it (follow_alters)
    finally:
        conn.close()
    log.info("capture installed on %s for %s", db, ", ".join(tables))
    return infos


def uninstall(db: Path) -> None:
    """Drop the capture triggers, the change log and the relay state; keep the log's last
    sequence number (``SEQ_TABLE``, one row) for a later ``install``."""
    conn = open_existing(db)
    try:
        with immediate_transaction(conn):
            for trigger, _ in _capture_triggers(conn):
                conn.execute(f"DROP TRIGGER {quote_ident(trigger)}")
            has_sequence = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'").fetchone()
            if has_sequence:
                conn.execute(_SEQ_DDL)
                conn.execute(
                    f"INSERT OR REPLACE INTO {SEQ_TABLE} (id, seq) SELECT 1, max(seq) FROM "
                    f"(SELECT seq FROM sqlite_sequence WHERE name = ? UNION ALL SELECT seq FROM {SEQ_TABLE}) "
                    "HAVING max(seq) IS NOT NULL", (LOG_TABLE,),
                )
            conn.execute(f"DROP TABLE IF EXISTS {LOG_TABLE}")
            conn.execute(f"DROP TABLE IF EXISTS {STATE_TABLE}")
    finally:
        conn.close()
    log.info("capture removed from %s", db)


def _stored_triggers(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name GLOB ?", (f"{TRIGGER_PREFIX}*",)
    ).fetchall())


def _altered(info: TableInfo, stored: dict[str, str]) -> bool:
    """The table has capture triggers made for other columns than it has now."""
    current = [stored.get(_trigger_name(info.name, suffix)) for suffix in _TRIGGER_SUFFIXES]
    return any(current) and current != trigger_sql(info)


def _log_all_rows(conn: sqlite3.Connection, info: TableInfo) -> None:
    conn.execute(
        f"INSERT INTO {LOG_TABLE} (tbl, op, pk, before, after, ts_ms) SELECT {_literal(info.name)}, 'u', "
        f"{info.key_sql()}, NULL, {info.image_sql()}, {_NOW_MS_SQL} FROM {quote_ident(info.name)}"
    )


def follow_alters(conn: sqlite3.Connection) -> list[str]:
    """Re-create the triggers of every captured table whose columns changed (ALTER TABLE ... ADD,
    RENAME or DROP COLUMN), and log each of its rows again as an update: the names of those tables.

    A trigger keeps the column list it was created with, so a change written after the ALTER and
    before this ran was logged without the new column. Logging every row of the table again, in
    the same write transaction as the new triggers, gives each row a later change that has all
    its columns: nothing written in between is lost, at the price of one log row per table row.
    """
    changed = []
    with immediate_transaction(conn):
        stored = _stored_triggers(conn)
        for table in sorted({table for _, table in _capture_triggers(conn)}):
            info = read_table_info(conn, table)
            if not _altered(info, stored):
                continue
            for suffix in _TRIGGER_SUFFIXES:
                conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(_trigger_name(table, suffix))}")
            for statement in trigger_sql(info):
                conn.execute(statement)
            _log_all_rows(conn, info)
            changed.append(table)
    for table in changed:
        log.info("capture follows the new columns of %s: triggers re-created, its rows logged again", table)
    return changed


def relog(db: Path, tables: Sequence[str]) -> tuple[int, int, dict[str, int]]:
    """Log every row of ``tables`` again as an update, in one write transaction (``cdcapp
    backfill``): (the log's last sequence before, after, rows logged per table)."""
    conn = open_existing(db)
    try:
        with immediate_transaction(conn):
            captured = {table for _, table in _capture_triggers(conn)}
            missing = [t for t in tables if t not in captured]
            if missing:
                raise CaptureError(f"no capture on {missing} in {db}: run `cdcapp capture sqlite` with them first")
            start = last_seq(conn)
            counts = {}
            for table in tables:
                info = read_table_info(conn, table)
                _log_all_rows(conn, info)
                counts[table] = conn.execute("SELECT changes()").fetchone()[0]
            return start, last_seq(conn), counts
    finally:
        conn.close()


def last_seq(conn: sqlite3.Connection) -> int:
    """The change log's last sequence number handed out (0 before the first)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (LOG_TABLE,)).fetchone()
    return row[0] if row else 0


def captured_tables(conn: sqlite3.Connection) -> list[TableInfo]:
    """The tables with capture triggers, parents before children (snapshot order)."""
    names = sorted({table for _, table in _capture_triggers(conn)})
    parents = {
        name: {row[2] for row in conn.execute(f"PRAGMA foreign_key_list({quote_ident(name)})")} & set(names) - {name}
        for name in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        # A foreign-key cycle has no parent-first order; take the rest alphabetically.
        ordered.extend(ready or [n for n in names if n not in ordered])
    return [read_table_info(conn, n) for n in ordered]
