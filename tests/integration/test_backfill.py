"""``cdcapp backfill`` on the real stack, while the application writes: ClickHouse tables that lost
their rows are filled again from the sources' current rows, and ``verify`` ends equal. The SQLite
test also refills the fact table, by backfilling its root entity (order_items).

PostgreSQL and MariaDB re-read through Debezium's incremental snapshot (the signalling table and
the connector's notifications); SQLite logs its rows again for the relay.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdcapp.clickhouse.client import open_target
from cdcapp.config import Settings
from cdcapp.sources.connections import connect, connect_sqlite
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.workload import BackgroundWorkload
from tests.integration.sqlite_source import sqlite_source

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def pipeline(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    pipeline = Pipeline.fresh(stack, tmp_path_factory.mktemp("logs"), prefix="backfill")
    pipeline.start_worker()
    report = pipeline.verify("postgres")  # caught up with the shared topics' history
    assert report.equal, report.render()
    yield pipeline
    pipeline.remove()


def lose(pipeline: Pipeline, *tables: str) -> None:
    """ClickHouse loses every row of ``tables`` (as after a bad migration or a restored backup)."""
    target = open_target(pipeline.settings.resolved_clickhouse_url, pipeline.database)
    try:
        for table in tables:
            target.execute(f"TRUNCATE TABLE {target.database}.{table}")
    finally:
        target.close()


def backfill(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | pipeline.env | {"CDCAPP_KAFKA_BOOTSTRAP": pipeline.settings.kafka_bootstrap}
    done = subprocess.run([sys.executable, "-m", "cdcapp.cli", "backfill", "--verify-wait", "0", *args], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_debezium_incremental_snapshot_refills_lost_tables_while_streaming(pipeline: Pipeline, kind: str) -> None:
    settings = pipeline.settings
    app = BackgroundWorkload(lambda: connect(kind, settings), kind, rate=100, seed=5150)  # type: ignore[arg-type]
    app.start()
    try:
        time.sleep(2)
        lose(pipeline, "dim_customer")
        # One table: a backfill writes its rows to the shared source topics, which every later
        # pipeline of the suite reads from the start (the fact refill is the SQLite test's).
        done = backfill(pipeline, "--source", kind, "--table", "customers")
        assert "customers:" in done.stdout and "rows re-read" in done.stdout, done.stdout
    finally:
        app.finish()
    report = pipeline.verify(kind)
    assert report.equal, report.render()


def test_sqlite_backfill_through_the_relay(pipeline: Pipeline, tmp_path: Path) -> None:
    source_id = f"sqlite-{pipeline.settings.app_id}"
    with sqlite_source(tmp_path, source_id) as db:
        app = BackgroundWorkload(lambda: connect_sqlite(db), "sqlite", rate=100, seed=5151)
        app.start()
        try:
            time.sleep(5)
            lose(pipeline, "dim_customer", "fact_order")
            done = backfill(pipeline, "--source", "sqlite", "--db", str(db), "--table", "customers",
                            "--table", "order_items")
            assert "customers:" in done.stdout and "rows re-read" in done.stdout, done.stdout
        finally:
            app.finish()
        report = pipeline.verify("sqlite", source_id=source_id, sqlite_path=db)
        assert report.equal, report.render()
