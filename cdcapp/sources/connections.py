"""DB-API connections to the three OLTP sources, configured the same way everywhere.

SQLite connections are opened in autocommit mode (``isolation_level=None``): callers start
their transactions themselves, the application with ``BEGIN IMMEDIATE`` so that it waits on
the write lock up front (a deferred transaction that upgrades from read to write fails at
once with ``database is locked`` in WAL mode, whatever the busy timeout).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from cdcapp.config import Settings

Kind = Literal["postgres", "mariadb", "sqlite"]

#: Long enough to outwait the capture relay's short write transactions and a checkpoint.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def connect(kind: Kind, settings: Settings, sqlite_path: Path | None = None) -> Any:
    if kind == "postgres":
        import psycopg

        return psycopg.connect(
            host=settings.pg_host,
            port=settings.pg_port,
            dbname=settings.pg_db,
            user=settings.pg_user,
            password=settings.pg_password,
        )
    if kind == "mariadb":
        import pymysql

        return pymysql.connect(
            host=settings.mariadb_host,
            port=settings.mariadb_port,
            user=settings.mariadb_user,
            password=settings.mariadb_password,
            database=settings.mariadb_db,
            charset="utf8mb4",
            autocommit=False,
        )
    if kind == "sqlite":
        if sqlite_path is None:
            raise ValueError("a SQLite source needs a database path")
        return connect_sqlite(sqlite_path)
    raise ValueError(f"unknown source kind {kind!r}")


def connect_sqlite(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        check_same_thread=check_same_thread,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # NORMAL is durable against process crashes in WAL mode; only power loss can drop
    # the last commits, and it saves an fsync per transaction.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def schema_sql(kind: Kind) -> str:
    """The schema script shipped in ``cdcapp/sources/schema/<kind>.sql``."""
    res = resources.files("cdcapp.sources").joinpath("schema", f"{kind}.sql")
    if not res.is_file():
        raise FileNotFoundError(f"no schema script for {kind}")
    return res.read_text(encoding="utf-8")


def split_statements(script: str) -> list[str]:
    """Split a plain DDL script on ``;`` (the shipped schema scripts have no procedures or strings with ``;``)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def create_oltp_schema(kind: Kind, conn: Any) -> None:
    """Create the OLTP tables if they are missing.

    The SQLite script is idempotent and always applied. The PostgreSQL and MariaDB schemas
    belong to the stack, which creates them; their scripts are applied only to a database
    that has no ``customers`` table yet, so this never runs DDL against a live schema.
    """
    script = schema_sql(kind)
    if kind == "sqlite":
        conn.executescript(script)
        return
    if _has_table(kind, conn, "customers"):
        return
    with conn.cursor() as cur:
        for statement in split_statements(script):
            cur.execute(statement)
    conn.commit()


def _has_table(kind: Kind, conn: Any, table: str) -> bool:
    schema = "current_schema()" if kind == "postgres" else "DATABASE()"
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT 1 FROM information_schema.tables WHERE table_schema = {schema} AND table_name = %s",
            (table,),
        )
        found = cur.fetchone() is not None
    conn.commit()
    return found


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (take the write lock up front) ... ``COMMIT``, or ``ROLLBACK`` on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
