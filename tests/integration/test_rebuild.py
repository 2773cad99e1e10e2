"""``cdcapp rebuild`` on the real stack: a fact column added to the spec is filled for all history.

The pipeline runs a spec without ``fact_order.product_name``; its products then carry no name
down to the facts (only what some fact uses is propagated), so the column can only come from a
rebuild. The rebuild runs while the application writes; a reader polls ``fact_order_current``
the whole time. The pipeline reads source topics of its own: no shared history to wait for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cdcapp.clickhouse.client import open_target
from cdcapp.clickhouse.generation import SUPERSEDED_EXIT
from cdcapp.config import Settings
from cdcapp.model.spec import DEFAULT_SPEC, load_spec
from cdcapp.sources.connections import connect_sqlite
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.workload import BackgroundWorkload
from tests.integration.sqlite_source import sqlite_source, write_changes

pytestmark = pytest.mark.stack


class Reader(threading.Thread):
    """What a dashboard sees: the view's row count and whether it has the new column, every 50 ms."""

    def __init__(self, url: str, database: str, source_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.database, self.source_id = url, database, source_id
        self.samples: list[tuple[int, bool]] = []
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        target = open_target(self.url, self.database)
        db = target.database
        try:
            while not self.done.is_set():
                try:
                    count = target.query(f"SELECT count() FROM {db}.fact_order_current "
                                         f"WHERE _source = '{self.source_id}'")[0][0]
                    columns = {r[0] for r in target.query(
                        f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'fact_order_current'")}
                    self.samples.append((count, "product_name" in columns))
                except Exception as exc:  # noqa: BLE001 - what a reader would have got is the finding
                    self.errors.append(str(exc).splitlines()[0])
                time.sleep(0.05)
        finally:
            target.close()


def test_rebuild_fills_a_new_fact_column_for_all_history_and_swaps(stack: Settings, tmp_path: Path) -> None:
    before = yaml.safe_load(DEFAULT_SPEC.read_text())
    del before["facts"][0]["columns"]["product_name"]
    before_path = tmp_path / "before.yaml"
    before_path.write_text(yaml.safe_dump(before))
    pipeline = Pipeline.fresh(stack, tmp_path, prefix="rb", own_sources=True, CDCAPP_PARTITIONS="2",
                              CDCAPP_SPEC_PATH=str(before_path))
    pipeline.spec = load_spec(before_path)
    source_id = f"sqlite-{pipeline.settings.app_id}"
    with sqlite_source(tmp_path, source_id, pipeline.settings.source_topic_prefix) as db:
        old_worker = pipeline.start_worker()
        write_changes(db, 2_000, seed=1)
        report = pipeline.verify("sqlite", source_id, db, wait_s=300)
        assert report.equal, report.render()

        reader = Reader(pipeline.settings.resolved_clickhouse_url, pipeline.database, source_id)
        reader.start()
        app = BackgroundWorkload(lambda: connect_sqlite(db), "sqlite", rate=50, seed=77)
        app.start()
        try:
            env = os.environ | pipeline.env | {"CDCAPP_SPEC_PATH": str(DEFAULT_SPEC)}
            rebuild = subprocess.run(
                [sys.executable, "-m", "cdcapp.cli", "rebuild", "--source", f"sqlite={source_id}", "--db", str(db),
                 "--verify-wait", "300", "--drop-old"],
                env=env, capture_output=True, text=True, timeout=900)
            assert rebuild.returncode == 0, rebuild.stdout + rebuild.stderr
            assert "is live" in rebuild.stdout, rebuild.stdout
            print(rebuild.stdout)
            # The live worker left at the hand-over, without a crash.
            assert old_worker.process is not None and old_worker.process.wait(60) == SUPERSEDED_EXIT

            # Started again with the new spec, a worker carries on as the new generation.
            pipeline.env["CDCAPP_SPEC_PATH"] = str(DEFAULT_SPEC)
            pipeline.spec = load_spec(DEFAULT_SPEC)
            pipeline.workers.clear()
            pipeline.start_worker()
        finally:
            app.finish()
            reader.done.set()
            reader.join(30)
        write_changes(db, 1_000, seed=2)
        report = pipeline.verify("sqlite", source_id, db, wait_s=300)
        assert report.equal, report.render()
        pipeline.remove()

    print(f"reader: {len(reader.samples)} samples, {len(reader.errors)} errors")
    assert not reader.errors, reader.errors[:5]
    counts = [count for count, _ in reader.samples]
    has_column = [flag for _, flag in reader.samples]
    assert min(counts) > 0, "a reader saw an empty fact_order_current"
    # The old table until the swap, the rebuilt one after, and nothing in between.
    assert has_column[0] is False and has_column[-1] is True
    assert has_column == sorted(has_column)
