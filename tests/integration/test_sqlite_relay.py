"""The SQLite relay against the real Kafka of the native stack.

Each test uses its own database file and source id, and reads back only the events whose
``source.name`` / ``source.db`` are its own, so reruns and other sources on the shared
``oltp.*`` topics do not interfere.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from cdcapp.config import Settings
from cdcapp.debezium.decode import decode
from cdcapp.kafka_admin import read_topic
from cdcapp.sources import sqlite as cap
from cdcapp.sources.connections import connect_sqlite, create_oltp_schema
from cdcapp.tools.workload import BackgroundWorkload, run_workload

pytestmark = pytest.mark.stack

TABLES = cap.DEFAULT_TABLES


def new_db(tmp_path: Path, label: str) -> tuple[Path, str]:
    tag = uuid.uuid4().hex[:10]
    db = tmp_path / f"{label}-{tag}.db"
    conn = connect_sqlite(db)
    create_oltp_schema("sqlite", conn)
    conn.close()
    return db, f"it-{label}-{tag}"


def relay_state(db: Path) -> tuple[int, int, int] | None:
    """(snapshot_done, published_seq, last seq written to the log), or None before the relay ran."""
    conn = connect_sqlite(db)
    try:
        row = conn.execute("SELECT snapshot_done, published_seq FROM _cdc_state").fetchone()
        last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = '_cdc_log'").fetchone()
    except sqlite3.OperationalError:  # no capture tables yet
        return None
    finally:
        conn.close()
    return (row[0], row[1], last[0] if last else 0) if row else None


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def drained(db: Path) -> bool:
    st = relay_state(db)
    return st is not None and st[0] == 1 and st[1] == st[2]


async def read_events(settings: Settings, source_id: str, db_name: str):
    """Our events per (table, key) in topic order, and the tombstones per partition.

    Returns ``events[(table, key_json)] = [value, ...]`` and
    ``tombstones[(topic, partition)] = [(offset, key_json)]`` (tombstones carry no source).
    """
    # read_topic assigns the partitions itself: a subscription without a group can be reassigned
    # on a metadata change and then falls back to the latest offsets, reading nothing.
    events: dict[tuple[str, bytes], list[tuple[dict, int, int]]] = defaultdict(list)
    tombstones: dict[tuple[str, int], list[tuple[int, bytes]]] = defaultdict(list)
    for table in TABLES:
        async for rec in read_topic(settings.kafka_bootstrap, f"{settings.source_topic_prefix}.{table}"):
            if rec.value is None:
                tombstones[(rec.topic, rec.partition)].append((rec.offset, rec.key))
                continue
            value = orjson.loads(rec.value)
            # The relay writes JSONConverter's schema envelope (the declared column types).
            if set(value) == {"schema", "payload"}:
                value = value["payload"]
            src = value.get("source") or {}
            if src.get("name") == source_id and src.get("db") == db_name:
                events[(src["table"], rec.key)].append((value, rec.partition, rec.offset))
    return events, tombstones


def db_images(db: Path) -> dict[tuple[str, bytes], dict]:
    """Every row of the database as the relay images it, keyed like the topic."""
    conn = connect_sqlite(db)
    try:
        out = {}
        for table in TABLES:
            info = cap.read_table_info(conn, table)
            for key, image in conn.execute(f"SELECT {info.key_sql()}, {info.image_sql()} FROM {table}"):
                out[(table, key.encode())] = orjson.loads(image)
        return out
    finally:
        conn.close()


def assert_topic_matches_db(db: Path, events, tombstones) -> None:
    """The last event per key is the row in the database; deleted rows end with a delete
    followed by a tombstone in the same partition."""
    images = db_images(db)
    assert images, "the workload left no rows"
    missing = [k for k in images if k not in events]
    assert not missing, f"{len(missing)} rows never reached Kafka, e.g. {missing[:3]}"
    for k, image in images.items():
        last = events[k][-1][0]
        assert last["op"] in ("r", "c", "u") and last["after"] == image, (k, last, image)
    gone = [k for k in events if k not in images]
    for table, key in gone:
        last, partition, offset = events[(table, key)][-1]
        assert last["op"] == "d", (table, key, last)
        topic_tombs = tombstones[(f"oltp.{table}", partition)]
        assert any(o > offset and k == key for o, k in topic_tombs), (table, key, "no tombstone")


def start_relay(db: Path, source_id: str, settings: Settings, log_path: Path) -> subprocess.Popen:
    env = os.environ | {
        "CDCAPP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CDCAPP_SOURCE_TOPIC_PREFIX": settings.source_topic_prefix,
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cdcapp.cli", "capture", "sqlite", "--db", str(db), "--source-id", source_id,
             "--batch", "200", "--poll-ms", "50"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def wait_streaming(log_path: Path, starts: int) -> None:
    """Until the relay started for the ``starts``-th time is streaming (and handles SIGTERM)."""
    wait_for(lambda: log_path.read_text().count("streaming changes after") >= starts, 60, "the relay to stream")


def stop_relay(proc: subprocess.Popen, log_path: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert rc == 0, log_path.read_text()


def application(db: Path, *, rate: float, seed: int, busy_timeout_ms: int | None = None) -> BackgroundWorkload:
    """The application, writing on its own connection (with an optional busy timeout)."""

    def open_db() -> sqlite3.Connection:
        conn = connect_sqlite(db)
        if busy_timeout_ms is not None:
            conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        return conn

    return BackgroundWorkload(open_db, "sqlite", rate=rate, seed=seed)


async def test_snapshot_live_changes_and_tombstones(stack: Settings, tmp_path: Path):
    db, source_id = new_db(tmp_path, "live")
    conn = connect_sqlite(db)
    # Ids nobody else uses, so this test's keys are unique on the shared topics.
    base = random.randrange(10**12, 10**15) * 10
    c0, c1, c2, p0, o0, i0, i1 = (base + n for n in range(7))
    ts = "2024-06-01 12:00:00"
    for cid in (c0, c1):
        conn.execute("INSERT INTO customers VALUES (?, ?, 'Ann', 'DE', 'Berlin', ?)", (cid, f"{cid}@example.com", ts))
    conn.execute("INSERT INTO products VALUES (?, 'Mug', 'kitchen', '12.30', ?)", (p0, ts))
    cap.install(db)

    stop = asyncio.Event()
    relay = asyncio.create_task(cap.run_relay(db, stack, source_id, stop, poll_interval=0.05))
    await asyncio.to_thread(wait_for, lambda: (relay_state(db) or (0,))[0] == 1, 60, "the snapshot")

    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO customers VALUES (?, ?, 'Bo', 'FR', 'Lyon', ?)", (c2, f"{c2}@example.com", ts))
    conn.execute("INSERT INTO orders VALUES (?, ?, ?, 'pending', '36.90')", (o0, c2, ts))
    conn.execute("INSERT INTO order_items VALUES (?, ?, ?, 3, '12.30')", (i0, o0, p0))
    conn.execute("COMMIT")
    conn.execute("UPDATE customers SET city = 'Hamburg' WHERE id = ?", (c0,))
    conn.execute("DELETE FROM customers WHERE id = ?", (c1,))
    conn.execute("UPDATE order_items SET id = ? WHERE id = ?", (i1, i0))  # a key change
    await asyncio.to_thread(wait_for, lambda: drained(db), 60, "the relay to catch up")
    stop.set()
    stats = await relay
    assert (stats.snapshot_rows, stats.changes) == (3, 7)

    events, tombstones = await read_events(stack, source_id, db.name)

    def ops(table: str, id_: int) -> list[str]:
        return [v["op"] for v, _, _ in events[(table, orjson.dumps({"id": id_}))]]

    assert ops("customers", c0) == ["r", "u"]
    assert ops("customers", c1) == ["r", "d"]
    assert ops("customers", c2) == ["c"]
    assert ops("products", p0) == ["r"]
    assert ops("orders", o0) == ["c"]
    assert ops("order_items", i0) == ["c", "d"]
    assert ops("order_items", i1) == ["c"]
    assert_topic_matches_db(db, events, tombstones)

    moved, _, _ = events[("customers", orjson.dumps({"id": c0}))][-1]
    assert moved["before"]["city"] == "Berlin" and moved["after"]["city"] == "Hamburg"
    item, _, _ = events[("order_items", orjson.dumps({"id": i1}))][-1]
    assert item["after"] == {"id": i1, "order_id": o0, "product_id": p0, "quantity": 3, "price": "12.30"}

    # Everything decodes with the pipeline's decoder, positions ordered as written.
    changes = [decode(key, orjson.dumps(v)) for (_, key), evs in events.items() for v, _, _ in evs]
    assert {ch.source for ch in changes} == {source_id} and {ch.connector for ch in changes} == {"sqlite"}
    snapshot_pos = {ch.position for ch in changes if ch.snapshot}
    assert len(snapshot_pos) == 1 and all(ch.position > min(snapshot_pos) for ch in changes if not ch.snapshot)
    c1_delete = decode(orjson.dumps({"id": c1}), orjson.dumps(events[("customers", orjson.dumps({"id": c1}))][-1][0]))
    assert c1_delete.op == "d" and c1_delete.key == {"id": c1} and c1_delete.before["city"] == "Berlin"
    conn.close()


def test_sigkilled_relay_loses_nothing(stack: Settings, tmp_path: Path):
    db, source_id = new_db(tmp_path, "kill")
    log_path = tmp_path / "relay.log"
    conn = connect_sqlite(db)
    run_workload(conn, "sqlite", rate=0, changes=20_000, seed=11)
    conn.close()

    app = application(db, rate=2000, seed=12)
    app.start()

    # First kill: while the snapshot is being published (its state is pending).
    relay = start_relay(db, source_id, stack, log_path)
    wait_for(lambda: relay_state(db) is not None, 60, "the snapshot to start")
    time.sleep(0.3)
    relay.send_signal(signal.SIGKILL)
    relay.wait()
    killed_in_snapshot = relay_state(db)[0] == 0

    # Second kill: while streaming under load, past the snapshot.
    relay = start_relay(db, source_id, stack, log_path)
    wait_streaming(log_path, 1)
    time.sleep(1.5)
    relay.send_signal(signal.SIGKILL)
    relay.wait()
    assert app.is_alive()

    relay = start_relay(db, source_id, stack, log_path)
    wait_streaming(log_path, 2)
    time.sleep(1.0)
    changes = app.finish()
    wait_for(lambda: drained(db), 60, "the relay to catch up")
    stop_relay(relay, log_path)
    last_seq = relay_state(db)[2]

    events, tombstones = asyncio.run(read_events(stack, source_id, db.name))
    assert_topic_matches_db(db, events, tombstones)

    # No gap: every log entry after the final snapshot's position is on the topic.
    values = [v for evs in events.values() for v, _, _ in evs]
    final_snapshot = max(v["source"]["seq"] for v in values if v["op"] == "r")
    streamed = {v["source"]["seq"] for v in values if v["op"] != "r" and v["source"]["seq"] > final_snapshot}
    assert streamed == set(range(final_snapshot + 1, last_seq + 1))
    assert changes > 2_000 and killed_in_snapshot, (changes, killed_in_snapshot)


def test_application_never_sees_database_is_locked(stack: Settings, tmp_path: Path):
    db, source_id = new_db(tmp_path, "busy")
    log_path = tmp_path / "relay.log"
    relay = start_relay(db, source_id, stack, log_path)
    try:
        wait_streaming(log_path, 1)
        # As fast as SQLite goes, with a busy timeout far below the default: the relay's
        # writes must stay short enough that the application never waits that long.
        app = application(db, rate=0, seed=21, busy_timeout_ms=1000)
        app.start()
        progress = []
        for _ in range(12):
            progress.append(relay_state(db)[1])
            time.sleep(0.5)
        changes = app.finish()
        wait_for(lambda: drained(db), 60, "the relay to catch up")
    finally:
        stop_relay(relay, log_path)
    assert changes > 5_000 and app.errors == 0
    assert len(set(progress)) > 3, "the relay did not publish while the application wrote"
    assert "database is locked" not in log_path.read_text()
