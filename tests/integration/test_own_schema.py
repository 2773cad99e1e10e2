"""Bring your own schema, end to end: the blog of ``examples/blog/spec.yaml`` in a PostgreSQL schema
of its own, with rows written before anyone captured it. Deploying the connector with its spec
adds its tables and snapshots them while the blog keeps writing; a second pipeline, the shop on
SQLite, runs beside it on the same Kafka and ClickHouse, named by nothing but its app id."""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from pathlib import Path

import pytest
import yaml

from cdcapp.clickhouse.client import open_target
from cdcapp.config import Settings
from cdcapp.kafka_admin import dlq_topic, end_offsets
from cdcapp.model.spec import load_spec
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


def drop(stack: Settings, kind: str, schema: str, tables: list[str]) -> None:
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


def dead_letters(settings: Settings) -> int:
    return sum(asyncio.run(end_offsets(settings.kafka_bootstrap, [dlq_topic(settings.internal_topic_prefix)])).values())


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_blog_in_its_own_schema_beside_the_shop(stack: Settings, tmp_path: Path, kind: str) -> None:
    schema = f"blog_{uuid.uuid4().hex[:8]}"
    spec_path = blog_spec(tmp_path, kind, schema)
    spec = load_spec(spec_path)
    tables = captured(spec, kind, stack)
    conn = connect(kind, stack)
    create_tables(spec, kind, conn)
    conn.commit()
    # Rows from before the capture: only the snapshot of the added tables can bring them.
    before = run_workload(conn, kind, rate=0, changes=800, seed=1, workload=partial(SpecWorkload, spec))
    conn.close()
    assert before.changes == 800

    blog = Pipeline.fresh(stack, tmp_path / "blog", prefix="blog", spec_path=spec_path)
    shop = Pipeline.fresh(stack, tmp_path / "shop", prefix="shop", own_sources=True)
    (tmp_path / "shop").mkdir()
    source_id = f"sqlite-{shop.settings.app_id}"
    echoed: list[str] = []
    try:
        with sqlite_source(tmp_path / "shop", source_id, shop.settings.source_topic_prefix) as db:
            blog.start_worker()
            shop.start_worker()
            writers = [
                BackgroundWorkload(partial(connect, kind, stack), kind, rate=20, seed=7,
                                   workload=partial(SpecWorkload, spec)),
                BackgroundWorkload(lambda: connect_sqlite(db), "sqlite", rate=20, seed=8),
            ]
            for writer in writers:
                writer.start()
            Connector(stack, kind, specs=[load_spec(), spec]).ensure_up(echoed.append)
            # Then the blog's changes stream through the publication the connector extended.
            streamed_from = writers[0].changes
            while writers[0].changes < streamed_from + 300:
                assert writers[0].is_alive(), writers[0].error
                time.sleep(0.5)
            written = [writer.finish() for writer in writers]
            assert all(written), written

            report = blog.verify(kind, wait_s=300)
            assert report.equal, report.render()
            assert {t.table: t.actual_rows > 0 for t in report.tables} == {
                "dim_author": True, "dim_post": True, "fact_comment": True}
            report = shop.verify("sqlite", source_id, db, wait_s=300)
            assert report.equal, report.render()

        added = [line for line in echoed if "captures " in line]
        assert sorted(added) == sorted(f"connector-{kind}: captures {table} -> {topic} (new: snapshotted incrementally)"
                                       for table, topic in tables.items()), echoed
        assert any("snapshot of" in line and "rows)" in line for line in echoed), echoed

        # Nothing shared: each pipeline's database holds its own tables, its dead-letter topic is
        # its own and empty.
        assert (blog.database, shop.database) == (blog.settings.app_id, shop.settings.app_id)
        target = open_target(blog.settings.resolved_clickhouse_url, blog.database)
        try:
            tables = {db_: {r[0] for r in target.query(f"SELECT name FROM system.tables WHERE database = '{db_}'")}
                      for db_ in (blog.database, shop.database)}
        finally:
            target.close()
        assert "fact_comment" in tables[blog.database] and "fact_order" not in tables[blog.database]
        assert "fact_order" in tables[shop.database] and "fact_comment" not in tables[shop.database]
        assert dead_letters(blog.settings) == dead_letters(shop.settings) == 0

        # A third worker pointed at the blog's database by mistake refuses, in one line.
        stray = WorkerProcess({**shop.env, "CDCAPP_APP_ID": f"stray{uuid.uuid4().hex[:6]}",
                               "CDCAPP_CLICKHOUSE_DB": blog.database}, free_port(), tmp_path / "stray.log").start()
        assert stray.process is not None and stray.process.wait(120) == 2
        refusal = [line for line in (tmp_path / "stray.log").read_text().splitlines() if "belongs to" in line]
        assert refusal and f"database {blog.database} belongs to pipeline {blog.settings.app_id}" in refusal[0]
    finally:
        blog.stop()
        shop.stop()
        Connector(stack, kind, prune=True).ensure_up(echoed.append)
        drop(stack, kind, schema, list(tables))
        print("\n".join(echoed))
