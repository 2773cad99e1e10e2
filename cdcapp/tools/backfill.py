"""``cdcapp backfill``: re-read a source's current rows while streaming goes on.

PostgreSQL and MariaDB: Debezium's incremental snapshot. A row in the source's signalling table
(``debezium_signal``, in the connector's ``signal.data.collection``) asks for it. The connector
reads each table in chunks of primary keys between two watermarks it writes to that table, and it
drops from a chunk every row that changed inside the window. So a backfilled row never hides a
newer streamed change (``cdcapp.debezium.positions``: its position is the window's end). Its
progress comes back on the connector's notification topic
(``notification.enabled.channels=sink``): STARTED, IN_PROGRESS per chunk (the last key read and
the table's largest key), TABLE_SCAN_COMPLETED (rows read), COMPLETED.

SQLite: the relay's log. In one write transaction, every row of each table is logged again (an
update without a before image, which the relay publishes as a snapshot read). That is a
consistent snapshot: no change can come between its rows, and every change after it has a later
sequence. Progress is the relay's published position against the last row logged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from pathlib import Path
from typing import Any

import orjson

from cdcapp.config import Settings
from cdcapp.debezium.notifications import Progress, TableProgress
from cdcapp.kafka_admin import end_offsets, notifications_topic
from cdcapp.sources.capture import signal_table
from cdcapp.sources.connections import connect, connect_sqlite


class BackfillFailed(RuntimeError):
    pass


class NotCaptured(BackfillFailed):
    """The connector skipped tables it does not capture (yet: a config update not applied)."""

    def __init__(self, tables: list[str]) -> None:
        super().__init__(f"the connector does not capture {', '.join(tables)}")
        self.tables = tables


#: how a table scan may end (Debezium's TableScanCompletionStatus) without the backfill failing
_SCANNED = {"SUCCEEDED", "EMPTY"}


def apply_notification(progress: Progress, signal_id: str, body: dict[str, Any]) -> None:
    """One notification of the connector into ``progress`` (others' notifications are ignored)."""
    if body.get("id") != signal_id or body.get("aggregate_type") != "Incremental Snapshot":
        return
    kind, data = body.get("type"), body.get("additional_data") or {}
    if kind == "IN_PROGRESS":
        table = progress.tables.setdefault(str(data.get("current_collection_in_progress")), TableProgress())
        table.last_key, table.maximum_key = data.get("last_processed_key"), data.get("maximum_key")
    elif kind == "TABLE_SCAN_COMPLETED":
        status = data.get("status")
        if status == "SKIPPED":
            return  # COMPLETED follows, and names the table as not scanned
        if status not in _SCANNED and status is not None:
            raise BackfillFailed(f"the scan of {data.get('scanned_collection')} ended {status}")
        table = progress.tables.setdefault(str(data.get("scanned_collection")), TableProgress())
        table.rows = int(data.get("total_rows_scanned") or 0)
    elif kind == "COMPLETED":
        skipped = [name for name, table in progress.tables.items() if table.rows is None]
        if skipped:
            raise NotCaptured(skipped)
        progress.done = True
    elif kind == "ABORTED":
        raise BackfillFailed("the connector aborted the incremental snapshot")


async def backfill_debezium(settings: Settings, kind: str, tables: list[str], on_progress: Callable[[Progress], None],
                            timeout_s: float) -> Progress:
    """``tables`` as the connector names them, ``schema.table`` (``cdcapp.sources.capture``)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = notifications_topic(kind)
    ends = await end_offsets(settings.kafka_bootstrap, [topic])
    signal_id = f"backfill-{uuid.uuid4().hex[:16]}"
    progress = Progress({t: TableProgress() for t in tables})
    data = orjson.dumps({"data-collections": list(progress.tables), "type": "incremental"}).decode()
    await asyncio.to_thread(_signal, settings, kind, signal_id, data)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t, p in ends] or [TopicPartition(topic, 0)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, ends.get((tp.topic, tp.partition), 0))
        deadline = time.monotonic() + timeout_s
        while not progress.done:
            if time.monotonic() > deadline:
                raise BackfillFailed(f"no completion from the {kind} connector in {timeout_s:.0f} s (is it running? "
                                     f"`cdcapp stack status`)")
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    apply_notification(progress, signal_id, orjson.loads(record.value))
            on_progress(progress)
    finally:
        await consumer.stop()
    return progress


def _signal(settings: Settings, kind: str, signal_id: str, data: str) -> None:
    conn = connect(kind, settings)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"INSERT INTO {signal_table(kind, settings)} (id, type, data) VALUES (%s, 'execute-snapshot', %s)",
                           (signal_id, data))
        conn.commit()
    finally:
        conn.close()


async def backfill_sqlite(db: Path, tables: list[str], on_progress: Callable[[Progress], None],
                          timeout_s: float) -> Progress:
    from cdcapp.sources.sqlite.triggers import relog

    start, last, counts = await asyncio.to_thread(relog, db, tables)
    progress = Progress({t: TableProgress() for t in tables})
    deadline = time.monotonic() + timeout_s
    while True:
        published = await asyncio.to_thread(_published_seq, db)
        share = 1.0 if last <= start else max(0.0, min(1.0, (published - start) / (last - start)))
        for table in progress.tables.values():
            table.share = share
        if published >= last:
            for name, table in progress.tables.items():
                table.rows = counts[name]
            progress.done = True
            on_progress(progress)
            return progress
        on_progress(progress)
        if time.monotonic() > deadline:
            raise BackfillFailed(f"the relay published up to {published} of {last} in {timeout_s:.0f} s (is "
                                 "`cdcapp capture sqlite` running?)")
        await asyncio.sleep(0.5)


async def backfill(settings: Settings, kind: str, tables: list[str], db: Path | None,
                   on_progress: Callable[[Progress], None], timeout_s: float) -> Progress:
    """Re-read ``tables`` (``cdcapp.sources.capture.source_name``s) of one source: ``kind`` postgres or
    mariadb (Debezium), or sqlite (``db``)."""
    if kind == "sqlite":
        if db is None:
            raise BackfillFailed("a SQLite backfill needs the database file (--db)")
        return await backfill_sqlite(db, tables, on_progress, timeout_s)
    return await backfill_debezium(settings, kind, tables, on_progress, timeout_s)


def _published_seq(db: Path) -> int:
    conn = connect_sqlite(db)
    try:
        row = conn.execute("SELECT published_seq FROM _cdc_state").fetchone()
        return row[0] if row else 0
    finally:
        conn.close()
