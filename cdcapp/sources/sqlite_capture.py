"""Change capture for SQLite: triggers fill a change log, a relay publishes it to Kafka.

SQLite has no replication stream for Debezium to read, so capture happens inside the
database. AFTER INSERT/UPDATE/DELETE triggers append each row change to ``_cdc_log`` in the
same transaction as the change: a rolled-back transaction leaves nothing, a committed one
cannot lose its log rows. The triggers are generated from ``PRAGMA table_info`` at install
time (``install`` again after altering a captured table).

The relay turns log rows into Debezium envelopes (JsonConverter with schemas disabled) on
``<source_topic_prefix>.<table>``, keyed by the primary key image ``{"id": 1}``, with a
tombstone after each delete. An update that changes the primary key is logged as a delete
of the old key and a create of the new one, as Debezium does.

Positions. ``_cdc_log.seq`` is AUTOINCREMENT and SQLite has a single writer, so seq order
is commit order and a seq is never reused. The snapshot reads, inside one read
transaction, the last seq handed out (S) and every captured table; the rows it sees are
exactly the state after log entry S, so each ``r`` event carries position S and the
stream continues with entries ``seq > S``. ``_cdc_state`` holds the published high-water
mark; it moves (and published log rows are pruned) only after Kafka acknowledged every
event up to it, so a restart re-publishes at most one batch: at-least-once, duplicates
are for the idempotent sink to absorb. A relay killed during the snapshot snapshots again,
but first re-sends the log from where the failed attempt started: a row that attempt
published and that was deleted since is in no new snapshot, only its delete is.

Limits: ``INSERT OR REPLACE`` removes conflicting rows without firing delete triggers
(unless the application enables ``recursive_triggers``); ``WITHOUT ROWID`` tables work,
tables without a declared primary key are refused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

import cdcapp
from cdcapp.config import Settings
from cdcapp.sources.connections import connect_sqlite, immediate_transaction

log = logging.getLogger(__name__)

DEFAULT_TABLES = ("customers", "products", "orders", "order_items")
LOG_TABLE = "_cdc_log"
STATE_TABLE = "_cdc_state"
TRIGGER_PREFIX = "_cdc_"
CONNECTOR = "sqlite"

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


class CaptureError(RuntimeError):
    pass


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    def image_sql(self, alias: str = "") -> str:
        """``json_object(...)`` of the whole row, as stored in the log and sent as before/after."""
        return self._json_object(self.columns, alias)

    def key_sql(self, alias: str = "") -> str:
        return self._json_object(self.key, alias)

    @staticmethod
    def _json_object(columns: Iterable[str], alias: str) -> str:
        prefix = f"{alias}." if alias else ""
        return "json_object(" + ", ".join(f"{_literal(c)}, {prefix}{_ident(c)}" for c in columns) + ")"


def read_table_info(conn: sqlite3.Connection, table: str) -> TableInfo:
    rows = conn.execute(f"PRAGMA table_info({_ident(table)})").fetchall()
    if not rows:
        raise CaptureError(f"no table {table!r} in the database")
    key = tuple(name for *_, name in sorted((pk, name) for _, name, _, _, _, pk in rows if pk))
    if not key:
        raise CaptureError(f"table {table!r} has no primary key; capture needs one to key its events")
    return TableInfo(table, tuple(r[1] for r in rows), key)


def _log_insert(info: TableInfo, op: str, key_alias: str, before: str | None, after: str | None) -> str:
    return (
        f"INSERT INTO {LOG_TABLE} (tbl, op, pk, before, after, ts_ms) VALUES ("
        f"{_literal(info.name)}, '{op}', {info.key_sql(key_alias)}, "
        f"{info.image_sql(before) if before else 'NULL'}, {info.image_sql(after) if after else 'NULL'}, "
        f"{_NOW_MS_SQL});"
    )


def trigger_sql(info: TableInfo) -> list[str]:
    t = _ident(info.name)
    same_key = " AND ".join(f"OLD.{_ident(c)} IS NEW.{_ident(c)}" for c in info.key)

    def name(suffix: str) -> str:
        return _ident(f"{TRIGGER_PREFIX}{info.name}_{suffix}")

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


def _open_existing(db: Path) -> sqlite3.Connection:
    # sqlite3 would create an empty database for a mistyped path.
    if not Path(db).is_file():
        raise CaptureError(f"no database at {db}")
    return connect_sqlite(db)


def install(db: Path, tables: Sequence[str] = DEFAULT_TABLES) -> list[TableInfo]:
    """Create the log and state tables and (re)create the triggers of exactly ``tables``.

    One write transaction, so the application's changes are either all before the
    triggers exist (and the snapshot covers them) or all captured.
    """
    conn = _open_existing(db)
    try:
        with immediate_transaction(conn):
            infos = [read_table_info(conn, t) for t in tables]
            conn.execute(_LOG_DDL)
            conn.execute(_STATE_DDL)
            for trigger, _ in _capture_triggers(conn):
                conn.execute(f"DROP TRIGGER {_ident(trigger)}")
            for info in infos:
                for statement in trigger_sql(info):
                    conn.execute(statement)
    finally:
        conn.close()
    log.info("capture installed on %s for %s", db, ", ".join(tables))
    return infos


def uninstall(db: Path) -> None:
    """Drop the capture triggers, the change log and the relay state."""
    conn = _open_existing(db)
    try:
        with immediate_transaction(conn):
            for trigger, _ in _capture_triggers(conn):
                conn.execute(f"DROP TRIGGER {_ident(trigger)}")
            conn.execute(f"DROP TABLE IF EXISTS {LOG_TABLE}")
            conn.execute(f"DROP TABLE IF EXISTS {STATE_TABLE}")
    finally:
        conn.close()
    log.info("capture removed from %s", db)


def captured_tables(conn: sqlite3.Connection) -> list[TableInfo]:
    """The tables with capture triggers, parents before children (snapshot order)."""
    names = sorted({table for _, table in _capture_triggers(conn)})
    parents = {
        name: {row[2] for row in conn.execute(f"PRAGMA foreign_key_list({_ident(name)})")} & set(names) - {name}
        for name in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        # A foreign-key cycle has no parent-first order; take the rest alphabetically.
        ordered.extend(ready or [n for n in names if n not in ordered])
    return [read_table_info(conn, n) for n in ordered]


# --- Envelopes ------------------------------------------------------------------------


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
    publish_ts_ms: int | None = None,
) -> dict[str, Any]:
    """A Debezium change event value, as JsonConverter writes it with schemas disabled."""
    return {
        "before": before,
        "after": after,
        "op": op,
        "ts_ms": publish_ts_ms if publish_ts_ms is not None else _now_ms(),
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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes | None


@dataclass(frozen=True)
class LogRow:
    seq: int
    tbl: str
    op: str
    pk: str
    before: str | None
    after: str | None
    ts_ms: int


def change_records(row: LogRow, *, topic_prefix: str, source_id: str, db_name: str) -> list[Record]:
    """The Kafka records for one change: its event, plus a tombstone after a delete."""
    value = build_envelope(
        table=row.tbl,
        op=row.op,
        before=orjson.loads(row.before) if row.before is not None else None,
        after=orjson.loads(row.after) if row.after is not None else None,
        source_id=source_id,
        db_name=db_name,
        seq=row.seq,
        change_ts_ms=row.ts_ms,
        snapshot=False,
    )
    topic = f"{topic_prefix}.{row.tbl}"
    key = row.pk.encode()
    records = [Record(topic, key, orjson.dumps(value))]
    if row.op == "d":
        records.append(Record(topic, key, None))
    return records


# --- Relay ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayState:
    source_id: str
    tables: str
    snapshot_done: bool
    #: the snapshot's position; while it is not done, where its first attempt started
    snapshot_seq: int
    published_seq: int

    def same_stream(self, source_id: str, tables: str) -> bool:
        return (self.source_id, self.tables) == (source_id, tables)


@dataclass
class RelayStats:
    snapshot_rows: int = 0
    changes: int = 0
    records: int = 0
    published_seq: int = 0
    snapshots: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


T = TypeVar("T")

_RETRY_SQLITE = ("database is locked", "database table is locked", "database is busy")


class _Store:
    """The relay's side of the database. Every call runs on one dedicated thread, so the
    event loop never blocks on SQLite and the connection stays on the thread that made it."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-relay")
        self._conn: sqlite3.Connection | None = None
        self._snapshot_cursor: sqlite3.Cursor | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                return await loop.run_in_executor(self._executor, fn, *args)
            except sqlite3.OperationalError as exc:
                if not any(m in str(exc) for m in _RETRY_SQLITE):
                    raise
                log.warning("%s: %s; retrying in %.2fs", self.db, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open_existing(self.db)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def load(self) -> tuple[RelayState | None, list[TableInfo]]:
        tables = captured_tables(self.conn)
        if not tables:
            raise CaptureError(f"capture is not installed in {self.db}")
        row = self.conn.execute(
            f"SELECT source_id, tables, snapshot_done, snapshot_seq, published_seq FROM {STATE_TABLE} WHERE id = 1"
        ).fetchone()
        return (RelayState(row[0], row[1], bool(row[2]), row[3], row[4]) if row else None), tables

    def start_snapshot(self, source_id: str, tables: str) -> RelayState:
        """Record that a snapshot is under way, from where the stream must resume if it fails.

        A retried snapshot keeps the first attempt's start: the aborted attempt may have
        published rows that were deleted since, and only the log from that start has their
        deletes. Log rows before the start are covered by any snapshot and are pruned.
        """
        with immediate_transaction(self.conn):
            row = self.conn.execute(
                f"SELECT source_id, tables, snapshot_done, snapshot_seq FROM {STATE_TABLE} WHERE id = 1"
            ).fetchone()
            if row and (row[0], row[1], row[2]) == (source_id, tables, 0):
                start = row[3]
            else:
                start = self._last_seq()
            state = RelayState(source_id, tables, False, start, start)
            self._write_state(state)
        return state

    def _last_seq(self) -> int:
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (LOG_TABLE,)).fetchone()
        return row[0] if row else 0

    def snapshot_begin(self) -> tuple[int, int]:
        """Open the snapshot's read transaction; return its position and start time."""
        self.end_read()
        self.conn.execute("BEGIN")
        # The first read fixes the transaction's view; what it returns is the last seq
        # committed before it, and the tables read next show exactly that state.
        return self._last_seq(), _now_ms()

    def snapshot_open(self, info: TableInfo) -> None:
        order = ", ".join(_ident(c) for c in info.key)
        self._snapshot_cursor = self.conn.execute(
            f"SELECT {info.key_sql()}, {info.image_sql()} FROM {_ident(info.name)} ORDER BY {order}"
        )

    def snapshot_fetch(self, n: int) -> list[tuple[str, str]]:
        assert self._snapshot_cursor is not None
        return self._snapshot_cursor.fetchmany(n)

    def end_read(self) -> None:
        self._snapshot_cursor = None
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def read_changes(self, after_seq: int, limit: int, upto_seq: int | None = None) -> list[LogRow]:
        rows = self.conn.execute(
            f"SELECT seq, tbl, op, pk, before, after, ts_ms FROM {LOG_TABLE} "
            "WHERE seq > ? AND seq <= coalesce(?, seq) ORDER BY seq LIMIT ?",
            (after_seq, upto_seq, limit),
        ).fetchall()
        return [LogRow(*r) for r in rows]

    def backlog(self, after_seq: int) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {LOG_TABLE} WHERE seq > ?", (after_seq,)).fetchone()[0]

    def commit_progress(self, state: RelayState) -> None:
        """Record the acknowledged position and prune what it covers, in one short write."""
        with immediate_transaction(self.conn):
            self._write_state(state)

    def _write_state(self, state: RelayState) -> None:
        self.conn.execute(
            f"INSERT OR REPLACE INTO {STATE_TABLE} (id, source_id, tables, snapshot_done, snapshot_seq, "
            "published_seq, updated_ms) VALUES (1, ?, ?, ?, ?, ?, ?)",
            (
                state.source_id,
                state.tables,
                int(state.snapshot_done),
                state.snapshot_seq,
                state.published_seq,
                _now_ms(),
            ),
        )
        self.conn.execute(f"DELETE FROM {LOG_TABLE} WHERE seq <= ?", (state.published_seq,))


class Relay:
    def __init__(
        self,
        db: Path,
        settings: Settings,
        source_id: str,
        *,
        producer: Any,
        poll_interval: float,
        batch_size: int,
        progress_interval: float,
    ) -> None:
        self.db = Path(db)
        self.settings = settings
        self.source_id = source_id
        self.producer = producer
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.progress_interval = progress_interval
        self.store = _Store(self.db)
        self.stats = RelayStats()
        self._last_progress = time.monotonic()
        self._backoff = 0.1

    async def run(self, stop: asyncio.Event) -> RelayStats:
        from aiokafka.errors import KafkaError

        try:
            while not stop.is_set():
                try:
                    await self._stream(stop)
                except (KafkaError, sqlite3.OperationalError, asyncio.TimeoutError) as exc:
                    # Resume from the last acknowledged position: nothing past it was recorded.
                    self.stats.errors += 1
                    log.warning(
                        "relay %s: %r; resuming from the last acknowledged position in %.1fs", self.db, exc, self._backoff
                    )
                    await self.store.call(self.store.end_read)
                    await _wait(stop, self._backoff)
                    self._backoff = min(self._backoff * 2, 10.0)
        finally:
            await self.store.close()
        return self.stats

    async def _stream(self, stop: asyncio.Event) -> None:
        state, tables = await self.store.call(self.store.load)
        names = ",".join(t.name for t in tables)
        if state is None or not state.snapshot_done or not state.same_stream(self.source_id, names):
            state = await self._snapshot(tables, names)
        self.stats.published_seq = state.published_seq
        log.info("relay %s: streaming changes after position %d", self.db.name, state.published_seq)
        while not stop.is_set():
            rows = await self.store.call(self.store.read_changes, state.published_seq, self.batch_size)
            if rows:
                await self._send(self._change_records(rows))
                state = RelayState(state.source_id, state.tables, True, state.snapshot_seq, rows[-1].seq)
                await self.store.call(self.store.commit_progress, state)
                self._backoff = 0.1
                self.stats.changes += len(rows)
                self.stats.published_seq = state.published_seq
            await self._report(state.published_seq)
            if len(rows) < self.batch_size:
                await _wait(stop, self.poll_interval)

    async def _snapshot(self, tables: list[TableInfo], names: str) -> RelayState:
        start = await self.store.call(self.store.start_snapshot, self.source_id, names)
        position, started_ms = await self.store.call(self.store.snapshot_begin)
        log.info("relay %s: snapshot of %s at position %d", self.db, names, position)
        rows_total = 0
        try:
            # Changes since a failed attempt started come first, in the snapshot's view, so
            # that rows the attempt published and that are gone now get their delete.
            after = start.snapshot_seq
            while rows := await self.store.call(self.store.read_changes, after, self.batch_size, position):
                await self._send(self._change_records(rows))
                after = rows[-1].seq
            for info in tables:
                await self.store.call(self.store.snapshot_open, info)
                while batch := await self.store.call(self.store.snapshot_fetch, self.batch_size):
                    records = [self._snapshot_record(info, key, image, position, started_ms) for key, image in batch]
                    await self._send(records)
                    rows_total += len(batch)
        finally:
            await self.store.call(self.store.end_read)
        state = RelayState(self.source_id, names, True, position, position)
        await self.store.call(self.store.commit_progress, state)
        self.stats.snapshot_rows += rows_total
        self.stats.snapshots += 1
        log.info("relay %s: snapshot done, %d rows", self.db, rows_total)
        return state

    def _change_records(self, rows: list[LogRow]) -> list[Record]:
        prefix = self.settings.source_topic_prefix
        return [
            rec
            for row in rows
            for rec in change_records(row, topic_prefix=prefix, source_id=self.source_id, db_name=self.db.name)
        ]

    def _snapshot_record(self, info: TableInfo, key: str, image: str, position: int, started_ms: int) -> Record:
        value = build_envelope(
            table=info.name,
            op="r",
            before=None,
            after=orjson.loads(image),
            source_id=self.source_id,
            db_name=self.db.name,
            seq=position,
            change_ts_ms=started_ms,
            snapshot=True,
        )
        return Record(f"{self.settings.source_topic_prefix}.{info.name}", key.encode(), orjson.dumps(value))

    async def _send(self, records: list[Record]) -> None:
        """Send in order and return once Kafka acknowledged all of them."""
        futures = [await self.producer.send(r.topic, value=r.value, key=r.key) for r in records]
        # Wait for every outcome, so no failure is left unobserved, then raise the first.
        for outcome in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        self.stats.records += len(records)

    async def _report(self, published_seq: int) -> None:
        now = time.monotonic()
        if now - self._last_progress < self.progress_interval:
            return
        self._last_progress = now
        backlog = await self.store.call(self.store.backlog, published_seq)
        elapsed = now - self.stats.started
        log.info(
            "relay %s: %d changes published (%.0f/s), position %d, backlog %d",
            self.db.name,
            self.stats.changes,
            self.stats.changes / elapsed if elapsed else 0.0,
            published_seq,
            backlog,
        )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


async def ensure_topics(settings: Settings, tables: Iterable[str]) -> None:
    """Create the source topics if missing, rather than rely on broker auto-creation."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [f"{settings.source_topic_prefix}.{t}" for t in tables]
        missing = [t for t in missing if t not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
            )
            log.info("created topics %s", ", ".join(missing))
    finally:
        await admin.close()


async def run_relay(
    db: Path,
    settings: Settings,
    source_id: str = "sqlite",
    stop_event: asyncio.Event | None = None,
    *,
    poll_interval: float = 0.1,
    batch_size: int = 1000,
    progress_interval: float = 5.0,
    producer: Any = None,
) -> RelayStats:
    """Snapshot, then publish the change log of ``db`` until ``stop_event`` is set.

    ``producer`` stands in for the aiokafka producer (tests); by default one is made from
    ``settings`` with ``acks=all`` and idempotence, and the source topics are created.
    """
    db = Path(db)
    stop = stop_event or asyncio.Event()
    owned = producer is None
    if owned:
        from aiokafka import AIOKafkaProducer

        conn = _open_existing(db)
        try:
            tables = [t.name for t in captured_tables(conn)]
        finally:
            conn.close()
        await ensure_topics(settings, tables)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"cdcapp-sqlite-{source_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        await producer.start()
    relay = Relay(
        db,
        settings,
        source_id,
        producer=producer,
        poll_interval=poll_interval,
        batch_size=batch_size,
        progress_interval=progress_interval,
    )
    try:
        stats = await relay.run(stop)
    finally:
        if owned:
            await producer.stop()
    log.info("relay %s stopped: %d snapshot rows, %d changes published", db.name, stats.snapshot_rows, stats.changes)
    return stats
