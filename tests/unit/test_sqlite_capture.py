"""Trigger capture and the relay's bookkeeping, with a stand-in producer (no Kafka)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

import cdcapp
from cdcapp.config import Settings
from cdcapp.debezium.encode import build_envelope
from cdcapp.sources import sqlite as cap
from cdcapp.sources.connections import connect_sqlite, create_oltp_schema

SETTINGS = Settings(source_topic_prefix="oltp")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    conn = connect_sqlite(path)
    create_oltp_schema("sqlite", conn)
    conn.close()
    return path


@pytest.fixture
def conn(db: Path):
    cap.install(db)
    c = connect_sqlite(db)
    yield c
    c.close()


def log_rows(conn: sqlite3.Connection) -> list[cap.LogRow]:
    return [cap.LogRow(*r) for r in conn.execute("SELECT seq, tbl, op, pk, before, after, ts_ms FROM _cdc_log ORDER BY seq")]


def add_customer(conn: sqlite3.Connection, email: str = "a@example.com") -> int:
    return conn.execute(
        "INSERT INTO customers (email, name, country, city, created_at) VALUES (?, 'Ann', 'DE', 'Berlin', '2024-01-02 03:04:05')",
        (email,),
    ).lastrowid


def test_triggers_log_insert_update_delete_with_row_images(conn):
    cid = add_customer(conn)
    conn.execute("UPDATE customers SET city = 'Hamburg' WHERE id = ?", (cid,))
    conn.execute("INSERT INTO products (name, category, price, created_at) VALUES ('Mug', 'kitchen', '12.30', '2024-01-02 03:04:05')")
    conn.execute("DELETE FROM customers WHERE id = ?", (cid,))

    rows = log_rows(conn)
    assert [(r.tbl, r.op, r.pk) for r in rows] == [
        ("customers", "c", f'{{"id":{cid}}}'),
        ("customers", "u", f'{{"id":{cid}}}'),
        ("products", "c", '{"id":1}'),
        ("customers", "d", f'{{"id":{cid}}}'),
    ]
    created = {"id": cid, "email": "a@example.com", "name": "Ann", "country": "DE", "city": "Berlin", "created_at": "2024-01-02 03:04:05"}
    moved = created | {"city": "Hamburg"}
    assert (rows[0].before, orjson.loads(rows[0].after)) == (None, created)
    assert (orjson.loads(rows[1].before), orjson.loads(rows[1].after)) == (created, moved)
    assert (orjson.loads(rows[3].before), rows[3].after) == (moved, None)
    # Decimals stay the exact strings they were stored as.
    assert orjson.loads(rows[2].after)["price"] == "12.30"
    assert all(abs(r.ts_ms - time.time_ns() // 1_000_000) < 10_000 for r in rows)


def test_change_is_logged_in_the_same_transaction(conn):
    conn.execute("BEGIN IMMEDIATE")
    add_customer(conn)
    conn.execute("ROLLBACK")
    assert log_rows(conn) == []

    conn.execute("BEGIN IMMEDIATE")
    add_customer(conn)
    conn.execute("COMMIT")
    assert [r.op for r in log_rows(conn)] == ["c"]


def test_primary_key_change_is_a_delete_and_a_create(conn):
    cid = add_customer(conn)
    conn.execute("UPDATE customers SET id = 100 WHERE id = ?", (cid,))
    ops = [(r.op, r.pk) for r in log_rows(conn)][1:]
    assert ops == [("d", f'{{"id":{cid}}}'), ("c", '{"id":100}')]


def test_install_reads_the_columns_and_is_repeatable(db):
    c = connect_sqlite(db)
    c.execute("ALTER TABLE customers ADD COLUMN phone TEXT")
    c.execute("CREATE TABLE tags (a TEXT, b INTEGER, label TEXT, PRIMARY KEY (b, a)) WITHOUT ROWID")
    cap.install(db, ["customers", "tags"])
    cap.install(db, ["customers", "tags"])
    c.execute("INSERT INTO tags VALUES ('x', 2, 'hi')")
    cid = add_customer(c)
    rows = log_rows(c)
    assert rows[0].pk == '{"b":2,"a":"x"}' and orjson.loads(rows[0].after) == {"a": "x", "b": 2, "label": "hi"}
    assert orjson.loads(rows[1].after)["phone"] is None and rows[1].pk == f'{{"id":{cid}}}'
    # Re-installing with fewer tables drops the others' triggers.
    cap.install(db, ["tags"])
    add_customer(c, "b@example.com")
    assert len(log_rows(c)) == 2
    c.close()


def test_install_refuses_missing_tables_and_tables_without_key(db):
    c = connect_sqlite(db)
    c.execute("CREATE TABLE heap (x TEXT)")
    c.close()
    with pytest.raises(cap.CaptureError, match="no table"):
        cap.install(db, ["nope"])
    with pytest.raises(cap.CaptureError, match="primary key"):
        cap.install(db, ["heap"])


def test_uninstall_removes_triggers_and_tables(conn, db):
    add_customer(conn)
    cap.uninstall(db)
    leftovers = conn.execute("SELECT type, name FROM sqlite_master WHERE name LIKE '\\_cdc\\_%' ESCAPE '\\'").fetchall()
    assert leftovers == [("table", "_cdc_seq")]  # the sequence's high-water mark, one row
    add_customer(conn, "b@example.com")  # the application keeps working without the log
    assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 2
    cap.uninstall(db)  # idempotent


def test_a_reinstalled_capture_continues_the_sequence(conn, db):
    """Positions never restart: after uninstall and install, the log and the relay's snapshot
    position go on from the last sequence number, so the pipeline does not take the new changes
    for replays of old ones."""
    for n in range(3):
        add_customer(conn, f"{n}@example.com")
    last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = '_cdc_log'").fetchone()[0]
    cap.uninstall(db)
    cap.uninstall(db)  # twice: the mark stays
    add_customer(conn, "uncaptured@example.com")
    cap.install(db)
    add_customer(conn, "after@example.com")
    assert [row.seq for row in log_rows(conn)] == [last + 1]


def test_envelope_shape():
    env = build_envelope(
        table="products",
        op="u",
        before={"id": 1, "price": "1.00"},
        after={"id": 1, "price": "2.50"},
        source_id="shop",
        db_name="shop.db",
        seq=42,
        change_ts_ms=1_700_000_000_000,
        snapshot=False,
        publish_ts_ms=1_700_000_000_123,
    )
    assert env == {
        "before": {"id": 1, "price": "1.00"},
        "after": {"id": 1, "price": "2.50"},
        "op": "u",
        "ts_ms": 1_700_000_000_123,
        "source": {
            "version": cdcapp.__version__,
            "connector": "sqlite",
            "name": "shop",
            "ts_ms": 1_700_000_000_000,
            "db": "shop.db",
            "table": "products",
            "seq": 42,
            "snapshot": "false",
        },
    }
    assert build_envelope(
        table="t", op="r", before=None, after={}, source_id="s", db_name="d", seq=0, change_ts_ms=0, snapshot=True,
        publish_ts_ms=0,
    )["source"]["snapshot"] == "true"


def test_delete_is_followed_by_a_tombstone():
    row = cap.LogRow(7, "orders", "d", '{"id":3}', '{"id":3,"total":"9.99"}', None, 123)
    records = cap.change_records(row, topic="oltp.orders", source_id="s", db_name="shop.db")
    assert [(r.topic, r.key) for r in records] == [("oltp.orders", b'{"id":3}')] * 2
    value = orjson.loads(records[0].value)
    assert value["op"] == "d" and value["before"] == {"id": 3, "total": "9.99"} and value["after"] is None
    assert value["source"]["seq"] == 7 and value["source"]["ts_ms"] == 123
    assert records[1].value is None


# --- relay with a stand-in producer -----------------------------------------------------


class FakeProducer:
    """Acknowledges every send, or fails the ones ``fail`` says to, like aiokafka would."""

    def __init__(self, fail=lambda n: False) -> None:
        self.sent: list[tuple[str, bytes, dict | None]] = []
        self.schemas: dict[str, dict] = {}
        self.fail = fail
        self.calls = 0

    async def send(self, topic, value=None, key=None):
        from aiokafka.errors import KafkaTimeoutError

        self.calls += 1
        fut = asyncio.get_running_loop().create_future()
        if self.fail(self.calls):
            fut.set_exception(KafkaTimeoutError())
        else:
            document = orjson.loads(value) if value is not None else None
            if document is not None:
                # The relay writes JSONConverter's schema envelope: the tests read the payload.
                self.schemas[topic] = document["schema"]
                document = document["payload"]
            self.sent.append((topic, key, document))
            fut.set_result(None)
        return fut

    def events(self):
        return [(t, orjson.loads(k), v) for t, k, v in self.sent]


async def until(cond, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def state(conn: sqlite3.Connection):
    """(source_id, snapshot_seq, published_seq), once the snapshot is done."""
    return conn.execute("SELECT source_id, snapshot_seq, published_seq FROM _cdc_state WHERE snapshot_done").fetchone()


async def start(db: Path, producer, source_id="shop", **kw):
    stop = asyncio.Event()
    task = asyncio.create_task(cap.run_relay(db, SETTINGS, source_id, stop, producer=producer, poll_interval=0.01, **kw))
    return stop, task


async def test_snapshot_then_changes_with_positions_and_pruning(db):
    c = connect_sqlite(db)
    add_customer(c, "before-install@example.com")
    cap.install(db)
    cid2 = add_customer(c, "before-snapshot@example.com")  # logged, and covered by the snapshot
    producer = FakeProducer()
    stop, task = await start(db, producer, batch_size=2)
    await until(lambda: len(producer.sent) >= 2)
    cid3 = add_customer(c, "live@example.com")
    c.execute("DELETE FROM customers WHERE id = ?", (cid2,))
    await until(lambda: len(producer.sent) >= 5)
    await until(lambda: state(c)[2] == c.execute("SELECT seq FROM sqlite_sequence WHERE name='_cdc_log'").fetchone()[0])
    stop.set()
    stats = await task

    events = producer.events()
    assert [(t, k["id"], v["op"] if v else None) for t, k, v in events] == [
        ("oltp.customers", 1, "r"),
        ("oltp.customers", cid2, "r"),
        ("oltp.customers", cid3, "c"),
        ("oltp.customers", cid2, "d"),
        ("oltp.customers", cid2, None),
    ]
    snapshot_seq = events[0][2]["source"]["seq"]
    assert events[1][2]["source"]["seq"] == snapshot_seq and events[0][2]["source"]["snapshot"] == "true"
    assert all(v["source"]["seq"] > snapshot_seq for _, _, v in events[2:4])
    assert events[2][2]["source"]["snapshot"] == "false" and events[2][2]["source"]["db"] == "shop.db"
    assert events[2][2]["after"]["email"] == "live@example.com"
    # The insert logged before the snapshot is not sent again: the snapshot covers it.
    assert snapshot_seq == 1
    assert log_rows(c) == []  # pruned after the acknowledgement
    assert state(c)[:2] == ("shop", snapshot_seq)
    assert (stats.snapshot_rows, stats.changes, stats.records) == (2, 2, 5)
    c.close()


async def test_restart_resumes_without_a_new_snapshot(conn, db):
    add_customer(conn)
    first = FakeProducer()
    stop, task = await start(db, first)
    await until(lambda: len(first.sent) == 1)
    stop.set()
    await task

    add_customer(conn, "b@example.com")
    second = FakeProducer()
    stop, task = await start(db, second)
    await until(lambda: len(second.sent) == 1)
    stop.set()
    await task
    assert [v["op"] for _, _, v in second.events()] == ["c"]

    # Another source id is another stream: it starts with its own snapshot.
    third = FakeProducer()
    stop, task = await start(db, third, source_id="other")
    await until(lambda: len(third.sent) == 2)
    stop.set()
    await task
    assert [v["op"] for _, _, v in third.events()] == ["r", "r"]


async def test_unacknowledged_batch_is_sent_again_and_nothing_is_lost(conn, db):
    producer = FakeProducer(fail=lambda n: n in (3, 4))
    stop, task = await start(db, producer, batch_size=3)
    for i in range(10):
        add_customer(conn, f"{i}@example.com")
    await until(lambda: state(conn) is not None and state(conn)[2] == 10)
    stop.set()
    stats = await task
    ids = [k["id"] for _, k, _ in producer.events()]
    assert set(ids) == set(range(1, 11))
    assert stats.errors >= 1 and len(ids) > 10  # a failed batch is re-sent whole
    assert log_rows(conn) == []


async def test_relay_refuses_a_database_without_capture(db):
    with pytest.raises(cap.CaptureError, match="not installed"):
        await cap.run_relay(db, SETTINGS, "s", producer=FakeProducer())
    missing = db.with_name("missing.db")
    with pytest.raises(cap.CaptureError, match="no database"):
        await cap.run_relay(missing, SETTINGS, "s", producer=FakeProducer())
    with pytest.raises(cap.CaptureError, match="no database"):
        cap.install(missing)
    assert not missing.exists()


async def test_retried_snapshot_sends_the_deletes_of_rows_an_aborted_attempt_published(conn, db):
    for i in range(3):
        add_customer(conn, f"{i}@example.com")
    app = connect_sqlite(db)

    def fail_once_after_first_row(n: int) -> bool:
        if n == 2:
            # The first attempt published customer 1; it goes away before the retry.
            app.execute("DELETE FROM customers WHERE id = 1")
            return True
        return False

    producer = FakeProducer(fail=fail_once_after_first_row)
    stop, task = await start(db, producer, batch_size=1)
    await until(lambda: state(conn) is not None and state(conn)[2] >= 1 and len(producer.sent) >= 4)
    stop.set()
    stats = await task
    app.close()

    events = [(k["id"], v["op"] if v else None, v["source"]["seq"] if v else None) for _, k, v in producer.events()]
    # The inserts are log entries 1-3, the delete 4. Attempt 1: r(1) at 3; the retry: the
    # delete and its tombstone, then r(2), r(3) at 4.
    assert events == [(1, "r", 3), (1, "d", 4), (1, None, None), (2, "r", 4), (3, "r", 4)]
    assert stats.snapshots == 1 and stats.errors == 1


async def test_a_changed_table_list_first_sends_what_the_log_holds_past_the_published_position(db):
    cap.install(db, ["customers"])
    app = connect_sqlite(db)
    kept, gone = add_customer(app, "kept@example.com"), add_customer(app, "gone@example.com")
    first = FakeProducer()
    stop, task = await start(db, first)
    await until(lambda: len(first.sent) == 2)
    stop.set()
    await task

    # While no relay runs: a delete is logged, and the captured tables change.
    app.execute("DELETE FROM customers WHERE id = ?", (gone,))
    cap.install(db, ["customers", "products"])
    second = FakeProducer()
    stop, task = await start(db, second)
    await until(lambda: state(app) is not None and len(second.sent) >= 3)
    stop.set()
    await task
    app.close()
    events = [(t, k["id"], v["op"] if v else None) for t, k, v in second.events()]
    assert events == [("oltp.customers", gone, "d"), ("oltp.customers", gone, None), ("oltp.customers", kept, "r")]


async def test_blobs_are_captured_as_hex_and_the_application_write_succeeds(db):
    app = connect_sqlite(db)
    app.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body BLOB, note TEXT)")
    app.execute("INSERT INTO docs VALUES (1, x'00ff10', 'before install')")
    cap.install(db, ["docs"])
    app.execute("INSERT INTO docs VALUES (2, x'cafe', 'after install')")
    app.execute("UPDATE docs SET note = ? WHERE id = 2", (b"\x80 not utf-8",))
    producer = FakeProducer()
    stop, task = await start(db, producer)
    await until(lambda: len(producer.sent) >= 2)
    stop.set()
    await task
    app.close()
    rows = [(k["id"], v["op"], v["after"]) for _, k, v in producer.events()]
    assert rows == [(1, "r", {"id": 1, "body": "00FF10", "note": "before install"}),
                    (2, "r", {"id": 2, "body": "CAFE", "note": "80206E6F74207574662D38"})]


async def test_an_added_column_is_followed_and_no_change_written_before_the_trigger_swap_lacks_it(conn, db):
    first = add_customer(conn)
    producer = FakeProducer()
    stop, task = await start(db, producer)
    await until(lambda: len(producer.sent) == 1)
    # Hold the write lock, so that the relay cannot swap the triggers between these statements:
    # the insert is logged by the old triggers, without the new column.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ALTER TABLE customers ADD COLUMN weight_kg DECIMAL(8, 3)")
    second = add_customer(conn, "b@example.com")
    conn.execute("UPDATE customers SET weight_kg = 1.25 WHERE id = ?", (second,))
    conn.execute("COMMIT")
    await until(lambda: len(producer.sent) >= 5)
    third = add_customer(conn, "c@example.com")
    await until(lambda: any(k["id"] == third for _, k, _ in producer.events()))
    stop.set()
    await task

    latest = {k["id"]: v["after"] for _, k, v in producer.events()}
    assert latest[first]["weight_kg"] is None and latest[second]["weight_kg"] == 1.25
    assert "weight_kg" in latest[third]
    field = next(f for f in producer.schemas["oltp.customers"]["fields"][1]["fields"] if f["field"] == "weight_kg")
    assert field["parameters"] == {"__debezium.source.column.type": "DECIMAL", "__debezium.source.column.length": "8",
                                   "__debezium.source.column.scale": "3"}
    # Once followed, the triggers capture the column themselves: no second re-log.
    assert cap.follow_alters(conn) == []


def test_install_after_an_alter_nothing_followed_logs_the_rows_again(conn, db):
    cid = add_customer(conn)
    conn.execute("DELETE FROM _cdc_log")
    conn.execute("ALTER TABLE customers ADD COLUMN tier TEXT")  # the relay is down: nothing follows
    conn.execute("UPDATE customers SET tier = 'gold' WHERE id = ?", (cid,))  # logged without tier
    cap.install(db)
    rows = log_rows(conn)
    assert "tier" not in orjson.loads(rows[0].after)
    assert (rows[-1].op, orjson.loads(rows[-1].after)["tier"]) == ("u", "gold")
    cap.install(db)
    assert len(log_rows(conn)) == len(rows)  # unchanged columns: nothing logged again


def test_a_row_logged_again_goes_out_as_a_snapshot_read():
    row = cap.LogRow(7, "customers", "u", '{"id":1}', None, '{"id":1,"email":"a"}', 1)
    (record,) = cap.change_records(row, topic="oltp.x", source_id="shop", db_name="shop.db")
    value = orjson.loads(record.value)
    assert (value["op"], value["source"]["snapshot"], value["source"]["seq"]) == ("r", "true", 7)
    update = cap.LogRow(8, "customers", "u", '{"id":1}', '{"id":1,"email":"a"}', '{"id":1,"email":"b"}', 1)
    assert orjson.loads(cap.change_records(update, topic="oltp.x", source_id="shop",
                                           db_name="shop.db")[0].value)["op"] == "u"
