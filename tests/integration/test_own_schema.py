"""Bring your own schema, end to end: the blog of ``examples/blog/spec.yaml`` in a PostgreSQL schema
of its own (MariaDB, SQLite: tables of its own), with rows written before anyone captured it.
Deploying the connector with its spec adds its tables to the running connector and snapshots them
while the blog keeps writing (SQLite: the capture started with the spec); `cdcapp verify --spec`
then finds ClickHouse equal. A second pipeline, the shop on SQLite, runs beside it on the same
Kafka and ClickHouse, each named by nothing but its app id."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest
import yaml

from cdcapp.clickhouse.client import open_target
from cdcapp.config import Settings
from cdcapp.kafka_admin import dlq_topic, end_offsets
from cdcapp.model.spec import DEFAULT_SPEC, load_spec
from cdcapp.sources.capture import captured
from cdcapp.sources.connections import connect, connect_sqlite
from cdcapp.stack.connectors import Connector
from cdcapp.tools.pipeline import Pipeline, free_port
from cdcapp.tools.spec_workload import SpecWorkload, create_tables
from cdcapp.tools.worker_process import WorkerProcess
from cdcapp.tools.workload import BackgroundWorkload, run_workload
from tests.integration.sqlite_source import sqlite_source

pytestmark = pytest.mark.stack

BLOG = Path(__file__).parents[2] / "examples" / "blog" / "spec.yaml"


def blog_spec(folder: Path, kind: str, schema: str) -> Path:
    """The example in a schema of this run's own (MariaDB: tables of its own in the configured
    database, where the stack's user may create them), with topics of its own: the shared topics
    keep the history of earlier runs, whose tables are gone."""
    spec = yaml.safe_load(BLOG.read_text())
    for name, entity in spec["entities"].items():
        entity["source"] = f"{schema}.{name}" if kind == "postgres" else f"{schema}_{name}"
        entity["topic"] = f"{schema}-src.{name}"
    path = folder / "blog.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def drop(stack: Settings, kind: str, schema: str) -> None:
    if kind == "postgres":
        with connect("postgres", stack) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return
    conn = connect("mariadb", stack)
    try:
        with conn.cursor() as cursor:
            for table in ("comments", "posts", "authors"):  # children first: the foreign keys
                cursor.execute(f"DROP TABLE IF EXISTS `{schema}_{table}`")
    finally:
        conn.close()


def until_true(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def dead_letters(settings: Settings) -> int:
    return sum(asyncio.run(end_offsets(settings.kafka_bootstrap, [dlq_topic(settings.internal_topic_prefix)])).values())


def verify_cli(pipeline: Pipeline, spec_path: Path, kind: str, *extra: str) -> str:
    """``cdcapp verify --spec`` as a user runs it: with the pipeline's app id, nothing else."""
    done = subprocess.run([sys.executable, "-m", "cdcapp.cli", "verify", "--source", kind, "--spec", str(spec_path),
                           "--wait", "300", *extra], env=os.environ | pipeline.env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("kind", ["postgres", "mariadb", "sqlite"])
def test_a_blog_in_its_own_schema_beside_the_shop(stack: Settings, tmp_path: Path, kind: str) -> None:
    schema = f"blog_{uuid.uuid4().hex[:8]}"
    spec_path = blog_spec(tmp_path, kind, schema)
    spec = load_spec(spec_path)
    tables = captured(spec, kind, stack)
    blog_db = tmp_path / "blog.db"
    connect_blog = partial(connect_sqlite, blog_db) if kind == "sqlite" else partial(connect, kind, stack)
    conn = connect_blog()
    create_tables(spec, kind, conn)
    conn.commit()
    # Rows from before the capture: only its snapshot can bring them.
    before = run_workload(conn, kind, rate=0, changes=800, seed=1, workload=partial(SpecWorkload, spec))
    conn.close()
    assert before.changes == 800

    blog = Pipeline.fresh(stack, tmp_path / "blog", prefix="blog", spec_path=spec_path)
    shop = Pipeline.fresh(stack, tmp_path / "shop", prefix="shop", own_sources=True)
    (tmp_path / "shop").mkdir()
    (tmp_path / "blog").mkdir()
    shop_source = f"sqlite-{shop.settings.app_id}"
    blog_source = f"sqlite-{blog.settings.app_id}"
    echoed: list[str] = []
    try:
        with ExitStack() as running:
            shop_db = running.enter_context(sqlite_source(tmp_path / "shop", shop_source,
                                                          shop.settings.source_topic_prefix))
            blog.start_worker()
            shop.start_worker()
            writers = [BackgroundWorkload(connect_blog, kind, rate=20, seed=7, workload=partial(SpecWorkload, spec)),
                       BackgroundWorkload(lambda: connect_sqlite(shop_db), "sqlite", rate=20, seed=8)]
            for writer in writers:
                writer.start()
            if kind == "sqlite":
                running.enter_context(sqlite_source(tmp_path / "blog", blog_source, spec_path=spec_path, db=blog_db))
            else:
                Connector(stack, kind, specs=[load_spec(), spec]).ensure_up(echoed.append)
                # The blog's worker saw the snapshot the deploy asked for, on its metrics and page.
                worker = blog.workers[0]
                until_true(lambda: (kind, 1.0) in [(labels["connector"], value) for labels, value in
                                                   worker.metric_samples("cdcapp_snapshot_progress_ratio")],
                           60, "the snapshot's progress at 1")
            # Then the blog's changes stream (through the publication the connector extended).
            streamed_from = writers[0].changes
            while writers[0].changes < streamed_from + 300:
                assert writers[0].is_alive(), writers[0].error
                time.sleep(0.5)
            written = [writer.finish() for writer in writers]
            assert all(written), written

            found = verify_cli(blog, spec_path, kind, *(["--source-id", blog_source, "--db", str(blog_db)]
                                                         if kind == "sqlite" else []))
            for table in ("dim_author", "dim_post", "fact_comment"):
                assert re.search(rf"^{table}: equal \(OLTP [1-9][\d,]* rows", found, re.M), found
            verify_cli(shop, DEFAULT_SPEC, "sqlite", "--source-id", shop_source,
                       "--db", str(shop_db))

        if kind != "sqlite":
            added = [line for line in echoed if "captures " in line]
            assert sorted(added) == sorted(
                f"connector-{kind}: captures {table} -> {topic} (new: snapshotted incrementally)"
                for table, topic in tables.items()), echoed
            assert any("snapshot of" in line and "rows)" in line for line in echoed), echoed

        # Nothing shared: each pipeline's database holds its own tables, its dead-letter topic is
        # its own and empty.
        assert (blog.database, shop.database) == (blog.settings.app_id, shop.settings.app_id)
        target = open_target(blog.settings.resolved_clickhouse_url, blog.database)
        try:
            stored = {db: {r[0] for r in target.query(f"SELECT name FROM system.tables WHERE database = '{db}'")}
                      for db in (blog.database, shop.database)}
        finally:
            target.close()
        assert "fact_comment" in stored[blog.database] and "fact_order" not in stored[blog.database]
        assert "fact_order" in stored[shop.database] and "fact_comment" not in stored[shop.database]
        assert dead_letters(blog.settings) == dead_letters(shop.settings) == 0

        # A third worker pointed at the blog's database by mistake refuses, in one line.
        stray = WorkerProcess({**shop.env, "CDCAPP_APP_ID": f"stray{uuid.uuid4().hex[:6]}",
                               "CDCAPP_CLICKHOUSE_DB": blog.database}, free_port(), tmp_path / "stray.log").start()
        assert stray.process is not None and stray.process.wait(120) == 2
        refusal = [line for line in (tmp_path / "stray.log").read_text().splitlines() if "belongs to" in line]
        assert refusal and f"database {blog.database} belongs to pipeline {blog.settings.app_id}" in refusal[0]
    finally:
        blog.remove()
        shop.remove()
        if kind != "sqlite":
            Connector(stack, kind, prune=True).ensure_up(echoed.append)
            drop(stack, kind, schema)
        print("\n".join(echoed))
