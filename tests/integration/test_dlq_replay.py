"""``cdcapp dlq`` on the real stack: a row for a table the spec lacks is dead-lettered; once the
spec gains the table, ``cdcapp dlq replay`` puts it back and it reaches ClickHouse.

The row is what a worker with the newer spec sends during a rolling upgrade (it owns the orders
stage, a worker with the older spec owns the sink partition); here the test sends it itself.
The pipeline reads source topics of its own, which stay empty: no history to wait for.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cdcapp.clickhouse.client import open_target
from cdcapp.config import Settings
from cdcapp.kafka_admin import produce_one, sink_topic
from cdcapp.model.messages import SinkRow, encode_batch
from cdcapp.model.spec import DEFAULT_SPEC
from cdcapp.tools.dlq import read_letters
from cdcapp.tools.pipeline import Pipeline

pytestmark = pytest.mark.stack


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | pipeline.env | {"CDCAPP_KAFKA_BOOTSTRAP": pipeline.settings.kafka_bootstrap}
    return subprocess.run([sys.executable, "-m", "cdcapp.cli", "dlq", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_a_row_for_a_table_the_spec_lacked_is_replayed_once_the_spec_has_it(stack: Settings, tmp_path: Path) -> None:
    pipeline = Pipeline.fresh(stack, tmp_path, prefix="dlq", own_sources=True, CDCAPP_PARTITIONS="2")
    pipeline.start_worker()
    try:
        row = SinkRow("dim_order", "postgres|42", {
            "id": 42, "customer_id": 7, "order_date": "2026-11-27 10:00:00", "status": "paid", "total": "12.50",
            "_source": "postgres", "_version": 1000, "_is_deleted": 0}, 0)
        prefix = pipeline.settings.internal_topic_prefix
        asyncio.run(produce_one(stack.kafka_bootstrap, sink_topic(prefix), b"", encode_batch([row.encode()])))

        def letters() -> list:
            return asyncio.run(read_letters(stack.kafka_bootstrap, prefix))

        wait_for(letters, 120, "the dead letter")
        (letter,) = letters()
        assert letter.stage == "sink" and "unknown table 'dim_order'" in letter.error and letter.replays == 0
        shown = cli(pipeline, "show", letter.id)
        assert shown.returncode == 0 and '"dim_order"' in shown.stdout, shown.stdout + shown.stderr

        # Replayed before the cause is fixed, it fails again: a new letter that counts the replay.
        early = cli(pipeline, "replay", "--stage", "sink", "--error", "unknown table")
        assert early.returncode == 0 and "1 letters sent back" in early.stdout, early.stdout + early.stderr
        wait_for(lambda: len(letters()) == 2, 120, "the replayed record's second letter")
        first, second = letters()
        assert first.id == letter.id and first.replayed and not second.replayed
        assert second.replays == 1 and "unknown table 'dim_order'" in second.error
        listed = cli(pipeline, "list")
        assert "2 dead letters, 1 of them replayed" in listed.stdout, listed.stdout + listed.stderr

        # The spec gains the table; the worker restarts with it and creates it.
        spec = yaml.safe_load(DEFAULT_SPEC.read_text())
        spec["dimensions"].append({"table": "dim_order", "entity": "orders"})
        spec_path = tmp_path / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        pipeline.stop()
        pipeline.env["CDCAPP_SPEC_PATH"] = str(spec_path)
        pipeline.workers.clear()
        pipeline.start_worker()

        dry = cli(pipeline, "replay", "--stage", "sink", "--error", "unknown table", "--dry-run")
        assert "1 matching letters were replayed before: skipped" in dry.stdout, dry.stdout + dry.stderr
        assert "1 letters would be replayed (dry run: nothing sent)" in dry.stdout, dry.stdout + dry.stderr
        done = cli(pipeline, "replay", "--stage", "sink", "--error", "unknown table")
        assert done.returncode == 0 and "1 letters sent back" in done.stdout, done.stdout + done.stderr

        target = open_target(pipeline.settings.resolved_clickhouse_url, pipeline.database)
        try:
            def stored() -> list:
                return target.query(f"SELECT id, status, toString(total) FROM {target.database}.dim_order_current")
            wait_for(lambda: stored() == [[42, "paid", "12.50"]], 120, "the replayed row in ClickHouse")
        finally:
            target.close()
    finally:
        pipeline.remove()
