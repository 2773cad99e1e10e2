"""The SQLite relay: publishes the capture triggers' change log to Kafka, at least once.

The relay turns log rows into Debezium envelopes (JsonConverter with schemas disabled) on
the table's topic (its entity's in the spec, else ``<source_topic_prefix>.<table>``), keyed by the primary key image ``{"id": 1}``, with a
tombstone after each delete.

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
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from cdcapp.config import Settings
from cdcapp.debezium.encode import build_envelope, connect_schema
from cdcapp.kafka_admin import TopicSpec, create_missing_topics, source_topic
from cdcapp.retry import Backoff
from cdcapp.sources.connections import immediate_transaction
from cdcapp.sources.sqlite.triggers import (
    LOG_TABLE,
    STATE_TABLE,
    CaptureError,
    TableInfo,
    captured_tables,
    follow_alters,
    last_seq,
    open_existing,
    quote_ident,
)
from cdcapp.threads import DedicatedThread

log = logging.getLogger(__name__)


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


def change_records(row: LogRow, *, topic: str, source_id: str, db_name: str,
                   schema: dict[str, Any] | None = None) -> list[Record]:
    """The Kafka records for one change: its event, plus a tombstone after a delete.

    An update without a before image is no application write: the triggers always log one. It is
    a row logged again (``relog``, ``follow_alters``), and goes out as what it is, a snapshot read.
    """
    reread = row.op == "u" and row.before is None
    value = build_envelope(
        table=row.tbl,
        op="r" if reread else row.op,
        before=orjson.loads(row.before) if row.before is not None else None,
        after=orjson.loads(row.after) if row.after is not None else None,
        source_id=source_id,
        db_name=db_name,
        seq=row.seq,
        change_ts_ms=row.ts_ms,
        snapshot=reread,
        publish_ts_ms=_now_ms(),
        schema=schema,
    )
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
        self._thread = DedicatedThread("sqlite-relay")
        self._conn: sqlite3.Connection | None = None
        self._snapshot_cursor: sqlite3.Cursor | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                return await self._thread.call(fn, *args)
            except sqlite3.OperationalError as exc:
                if not any(m in str(exc) for m in _RETRY_SQLITE):
                    raise
                delay = backoff.delay()
                log.warning("%s: %s; retrying in %.2fs", self.db, exc, delay)
                await asyncio.sleep(delay)

    async def close(self) -> None:
        await self._thread.call(self._close)
        self._thread.shutdown(wait=True)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_existing(self.db)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def schema_version(self) -> int:
        """SQLite's counter of schema changes: one read tells whether any table was altered."""
        return self.conn.execute("PRAGMA schema_version").fetchone()[0]

    def follow_alters(self) -> tuple[int, list[TableInfo]]:
        version = self.schema_version()
        follow_alters(self.conn)
        return version, captured_tables(self.conn)

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

        The same stream (source id) resumes where it stopped, and its snapshot starts there: a
        retried snapshot at the first attempt's start, since the aborted attempt may have
        published rows that were deleted since; a new snapshot for a changed table list at the
        last published position, since the log after it holds changes - deletes among them -
        that nothing has sent. Only the log from there has them; what is before is covered by
        any snapshot and pruned. Another source id is a new stream, from the log's end.
        """
        with immediate_transaction(self.conn):
            row = self.conn.execute(
                f"SELECT source_id, snapshot_done, snapshot_seq, published_seq FROM {STATE_TABLE} WHERE id = 1"
            ).fetchone()
            if row and row[0] == source_id:
                start = row[3] if row[1] else row[2]
            else:
                start = last_seq(self.conn)
            state = RelayState(source_id, tables, False, start, start)
            self._write_state(state)
        return state


    def snapshot_begin(self) -> tuple[int, int]:
        """Open the snapshot's read transaction; return its position and start time."""
        self.end_read()
        self.conn.execute("BEGIN")
        # The first read fixes the transaction's view; what it returns is the last seq
        # committed before it, and the tables read next show exactly that state.
        return last_seq(self.conn), _now_ms()

    def snapshot_open(self, info: TableInfo) -> None:
        order = ", ".join(quote_ident(c) for c in info.key)
        self._snapshot_cursor = self.conn.execute(
            f"SELECT {info.key_sql()}, {info.image_sql()} FROM {quote_ident(info.name)} ORDER BY {order}"
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
        topics: Mapping[str, str],
    ) -> None:
        self.db = Path(db)
        self.settings = settings
        self.topics = topics
        self.source_id = source_id
        self.producer = producer
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.progress_interval = progress_interval
        self.store = _Store(self.db)
        self.stats = RelayStats()
        self._last_progress = time.monotonic()
        self._backoff = Backoff(0.1, 10.0)
        #: table -> the Connect schema of its events (columns and their declared types)
        self.schemas: dict[str, dict[str, Any]] = {}

    async def run(self, stop: asyncio.Event) -> RelayStats:
        from aiokafka.errors import KafkaError

        try:
            while not stop.is_set():
                try:
                    await self._stream(stop)
                except (KafkaError, sqlite3.OperationalError, asyncio.TimeoutError) as exc:
                    # Resume from the last acknowledged position: nothing past it was recorded.
                    self.stats.errors += 1
                    delay = self._backoff.delay()
                    log.warning(
                        "relay %s: %r; resuming from the last acknowledged position in %.1fs", self.db, exc, delay
                    )
                    await self.store.call(self.store.end_read)
                    await _wait(stop, delay)
        finally:
            await self.store.close()
        return self.stats

    def _use(self, tables: list[TableInfo]) -> None:
        self.schemas = {t.name: connect_schema(self.source_id, t.name, t.columns, t.types, t.key) for t in tables}

    async def _stream(self, stop: asyncio.Event) -> None:
        state, tables = await self.store.call(self.store.load)
        names = ",".join(t.name for t in tables)
        self._use(tables)
        if state is None or not state.snapshot_done or not state.same_stream(self.source_id, names):
            state = await self._snapshot(tables, names)
        self.stats.published_seq = state.published_seq
        log.info("relay %s: streaming changes after position %d", self.db.name, state.published_seq)
        schema_version = None
        while not stop.is_set():
            if schema_version != await self.store.call(self.store.schema_version):
                # A table was altered (or the relay just started): capture follows its columns.
                schema_version, tables = await self.store.call(self.store.follow_alters)
                self._use(tables)
            rows = await self.store.call(self.store.read_changes, state.published_seq, self.batch_size)
            if rows:
                await self._send(self._change_records(rows))
                state = RelayState(state.source_id, state.tables, True, state.snapshot_seq, rows[-1].seq)
                await self.store.call(self.store.commit_progress, state)
                self._backoff.reset()
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

    def topic(self, table: str) -> str:
        return self.topics.get(table) or source_topic(self.settings.source_topic_prefix, table)

    def _change_records(self, rows: list[LogRow]) -> list[Record]:
        return [
            rec
            for row in rows
            for rec in change_records(row, topic=self.topic(row.tbl), source_id=self.source_id, db_name=self.db.name,
                                      schema=self.schemas.get(row.tbl))
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
            publish_ts_ms=_now_ms(),
            schema=self.schemas.get(info.name),
        )
        return Record(self.topic(info.name), key.encode(), orjson.dumps(value))

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
    topics: Mapping[str, str] | None = None,
) -> RelayStats:
    """Snapshot, then publish the change log of ``db`` until ``stop_event`` is set.

    ``topics``: table -> topic (``cdcapp.sources.capture.captured``; a table not in it goes to
    ``<source_topic_prefix>.<table>``). ``producer`` stands in for the aiokafka producer (tests); by default one is made from
    ``settings`` with ``acks=all`` and idempotence, and the source topics are created.
    """
    db = Path(db)
    stop = stop_event or asyncio.Event()
    owned = producer is None
    if owned:
        from aiokafka import AIOKafkaProducer

        conn = open_existing(db)
        try:
            tables = [t.name for t in captured_tables(conn)]
        finally:
            conn.close()
        # Create the source topics if missing, rather than rely on broker auto-creation.
        prefix = settings.source_topic_prefix
        await create_missing_topics(
            settings.kafka_bootstrap,
            [TopicSpec((topics or {}).get(t) or source_topic(prefix, t), settings.partitions,
                       settings.replication_factor) for t in tables],
        )
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
        topics=topics or {},
    )
    try:
        stats = await relay.run(stop)
    finally:
        if owned:
            await producer.stop()
    log.info("relay %s stopped: %d snapshot rows, %d changes published", db.name, stats.snapshot_rows, stats.changes)
    return stats
