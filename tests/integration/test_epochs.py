"""A source whose positions restart: without a new epoch its rows go stale; after
``cdcapp source reset-epoch`` the pipeline orders its new changes above the old ones.

SQLite stands in for MariaDB after ``RESET MASTER``: dropping the capture's kept sequence number
(``_cdc_seq``) is what restoring the database from a backup taken before the capture would do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdcapp.config import Settings
from cdcapp.sources.connections import connect_sqlite, create_oltp_schema
from cdcapp.sources import sqlite as capture
from cdcapp.tools.epochs import EpochRefused, reset_epoch_sync
from cdcapp.tools.pipeline import Pipeline
from tests.integration.sqlite_source import write_changes

pytestmark = pytest.mark.stack


def relay(db: Path, source_id: str, log: Path, pipeline: Pipeline) -> subprocess.Popen:
    env = os.environ | {"CDCAPP_SOURCE_TOPIC_PREFIX": pipeline.settings.source_topic_prefix,
                        "CDCAPP_KAFKA_BOOTSTRAP": pipeline.settings.kafka_bootstrap}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "cdcapp.cli", "capture", "sqlite", "--db", str(db),
                                 "--source-id", source_id], stdout=out, stderr=subprocess.STDOUT, env=env)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(30)


def wait_streaming(log: Path, starts: int) -> None:
    """Until the relay started for the ``starts``-th time streams: a change written earlier, while
    no trigger captured it, would reach the pipeline only through the snapshot, and a delete never."""
    deadline = time.monotonic() + 60
    while log.read_text().count("streaming changes after") < starts:
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)


def test_a_new_epoch_orders_restarted_positions_above_the_old(stack: Settings, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    conn = connect_sqlite(db)
    create_oltp_schema("sqlite", conn)
    conn.close()
    # Source topics of its own: the shared ones' history is not what this test is about.
    pipeline = Pipeline.fresh(stack, tmp_path, own_sources=True)
    source_id = f"sqlite-{pipeline.settings.app_id}"
    log = tmp_path / "relay.log"

    process = relay(db, source_id, log, pipeline)
    worker = pipeline.start_worker()
    try:
        wait_streaming(log, 1)
        write_changes(db, 3_000, seed=1)
        report = pipeline.verify("sqlite", source_id, db, wait_s=300)
        assert report.equal, report.render()

        # The capture goes, and comes back with its positions restarted at 1.
        stop(process)
        capture.uninstall(db)
        with connect_sqlite(db) as conn:
            conn.execute("DROP TABLE _cdc_seq")
        with pytest.raises(EpochRefused, match="stop them first"):
            reset_epoch_sync(pipeline.settings, pipeline.spec, source_id)
        pipeline.stop()
        new = reset_epoch_sync(pipeline.settings, pipeline.spec, source_id)
        assert new.epoch.number == 1

        # Same web port, so same RocksDB folder: it recovers only the changelog's tail.
        worker.start().wait_ready()
        process = relay(db, source_id, log, pipeline)
        wait_streaming(log, 2)
        write_changes(db, 3_000, seed=2)
        report = pipeline.verify("sqlite", source_id, db, wait_s=300)
        assert report.equal, report.render()
        # The positions did restart: the new capture's snapshot sits at the start of its log.
        with connect_sqlite(db) as conn:
            (snapshot_seq,) = conn.execute("SELECT snapshot_seq FROM _cdc_state").fetchone()
        assert snapshot_seq < 10
        rewound = sum(v for labels, v in worker.metric_samples("cdcapp_stale_changes_total")
                      if labels.get("reason") == "rewound")
        assert rewound == 0, f"{rewound} changes were taken for replays despite the new epoch"
    finally:
        stop(process)
        pipeline.remove()
