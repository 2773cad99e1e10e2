"""End to end, on the real stack: OLTP workload -> Debezium -> Kafka -> Faust -> ClickHouse, then
the ground-truth check (``*_current`` views == the same join computed in the OLTP database).

Every pipeline here has its own consumer group, internal topics and ClickHouse database, and
reads the shared ``oltp.*`` topics from the beginning, so it must reproduce the whole history of
the source databases, not just the changes of one test. The pipelines that start from nothing come
first, while that history is short; the shared one then takes each source in turn.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdcapp.config import Settings
from cdcapp.sources.connections import connect, create_oltp_schema
from cdcapp.tools.workload import run_workload
from cdcapp.tools.worker_process import WorkerProcess
from cdcapp.tools.pipeline import Pipeline

pytestmark = pytest.mark.stack

CHANGES = 10_000


def workload(settings: Settings, kind: str, seed: int, changes: int = CHANGES) -> None:
    conn = connect(kind, settings)  # type: ignore[arg-type]
    try:
        stats = run_workload(conn, kind, rate=0, changes=changes, seed=seed)
    finally:
        conn.close()
    assert stats.changes >= changes


def report_withheld_deliveries(*workers: WorkerProcess) -> None:
    """How often the Faust corrections withheld a delivery a seek overtook (shown with -s)."""
    counts = [w.metric_total("cdcapp_rebalance_stale_deliveries_total") for w in workers]
    print(f"deliveries withheld across rebalances, per worker: {counts}")


def test_chdb_sink_equals_the_oltp_join(stack: Settings, tmp_path: Path) -> None:
    """The embedded engine as the sink; verify reads through the worker that owns it."""
    pipeline = Pipeline.fresh(stack, tmp_path, clickhouse_url=f"chdb://{tmp_path / 'chdb'}")
    worker = pipeline.start_worker()
    try:
        started = time.time()
        workload(pipeline.settings, "postgres", seed=7)
        report = pipeline.verify("postgres")
        assert report.equal, report.render()
        # the bench times a drain to the last insert by this gauge
        assert started < worker.metric_total("cdcapp_sink_last_flush_timestamp_seconds") <= time.time()
    finally:
        pipeline.remove()


def test_two_workers_with_a_rebalance_mid_run(stack: Settings, tmp_path: Path) -> None:
    """Two workers share the partitions (RocksDB stores); the second joins during the workload."""
    pipeline = Pipeline.fresh(stack, tmp_path, CDCAPP_PARTITIONS="6")
    first = pipeline.start_worker()
    try:
        writer = threading.Thread(target=workload, args=(pipeline.settings, "postgres", 21))
        writer.start()
        time.sleep(5)
        second = pipeline.start_worker(wait=False)
        writer.join()
        second.wait_ready()
        report = pipeline.verify("postgres")
        report_withheld_deliveries(first, second)
        assert report.equal, report.render()
        assert first.status()["assigned_partitions"] and second.status()["assigned_partitions"]
    finally:
        pipeline.remove()


def test_workers_joining_and_leaving_mid_run(stack: Settings, tmp_path: Path) -> None:
    """Three rebalances under load: a second and a third worker join, then the third leaves."""
    pipeline = Pipeline.fresh(stack, tmp_path, CDCAPP_PARTITIONS="6")
    first = pipeline.start_worker()
    try:
        writer = threading.Thread(target=workload, args=(pipeline.settings, "postgres", 23, 20_000))
        writer.start()
        time.sleep(5)
        second = pipeline.start_worker(wait=False)
        time.sleep(12)
        third = pipeline.start_worker(wait=False)
        time.sleep(15)
        third.stop()
        writer.join()
        report = pipeline.verify("postgres")
        report_withheld_deliveries(first, second)
        assert report.equal, report.render()
    finally:
        pipeline.remove()


@pytest.fixture(scope="module")
def server_pipeline(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One worker, RocksDB store, the ClickHouse server (18.16) as the sink."""
    pipeline = Pipeline.fresh(stack, tmp_path_factory.mktemp("logs"))
    pipeline.start_worker()
    yield pipeline
    pipeline.remove()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_workload_through_debezium_equals_the_oltp_join(server_pipeline: Pipeline, kind: str) -> None:
    workload(server_pipeline.settings, kind, seed=hash(server_pipeline.settings.app_id + kind) % 10_000)
    report = server_pipeline.verify(kind)
    assert report.equal, report.render()
    fact = next(t for t in report.tables if t.table == "fact_order")
    assert fact.expected_rows > 100, "the workload must leave a real fact table to compare"


def test_sqlite_trigger_capture_equals_the_oltp_join(server_pipeline: Pipeline, tmp_path: Path) -> None:
    """SQLite has no Debezium connector: triggers + the relay feed the same topics and pipeline."""
    db = tmp_path / "shop.db"
    source_id = f"sqlite-{server_pipeline.settings.app_id}"
    conn = connect("sqlite", server_pipeline.settings, db)
    create_oltp_schema("sqlite", conn)
    conn.close()
    relay = subprocess.Popen(
        [sys.executable, "-m", "cdcapp.cli", "capture", "sqlite", "--db", str(db), "--source-id", source_id],
        stdout=open(tmp_path / "relay.log", "wb"), stderr=subprocess.STDOUT,
    )
    try:
        conn = connect("sqlite", server_pipeline.settings, db)
        try:
            stats = run_workload(conn, "sqlite", rate=0, changes=CHANGES, seed=5)
        finally:
            conn.close()
        assert stats.changes >= CHANGES
        report = server_pipeline.verify("sqlite", source_id=source_id, sqlite_path=db)
        assert report.equal, report.render()
    finally:
        relay.terminate()
        relay.wait(30)
