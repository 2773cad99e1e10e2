"""A SQLite source of its own for a test: a new database with the seed's schema, and its relay
(``cdcapp capture sqlite``) running as a process until the ``with`` block ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cdcapp.sources.connections import connect_sqlite, create_oltp_schema
from cdcapp.tools.workload import run_workload


@contextmanager
def sqlite_source(folder: Path, source_id: str, topic_prefix: str | None = None, spec_path: Path | None = None,
                  db: Path | None = None) -> Iterator[Path]:
    """The database's path, once its relay streams (to ``<topic_prefix>.<table>``, default: the settings').
    Without ``db``, a new one with the e-commerce schema; ``spec_path``: the spec the capture follows."""
    if db is None:
        db = folder / "shop.db"
        conn = connect_sqlite(db)
        create_oltp_schema("sqlite", conn)
        conn.close()
    log_path = folder / "relay.log"
    spec_args = ["--spec", str(spec_path)] if spec_path else []
    with open(log_path, "wb") as log:
        relay = subprocess.Popen(
            [sys.executable, "-m", "cdcapp.cli", "capture", "sqlite", "--db", str(db), "--source-id", source_id,
             *spec_args],
            stdout=log, stderr=subprocess.STDOUT,
            env=os.environ | ({"CDCAPP_SOURCE_TOPIC_PREFIX": topic_prefix} if topic_prefix else {}),
        )
    try:
        deadline = time.monotonic() + 60
        while "streaming changes after" not in log_path.read_text():
            assert relay.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield db
    finally:
        relay.terminate()
        relay.wait(30)


def write_changes(db: Path, changes: int, seed: int) -> None:
    """The generator's workload on the database, as fast as it goes."""
    conn = connect_sqlite(db)
    try:
        run_workload(conn, "sqlite", rate=0, changes=changes, seed=seed)
    finally:
        conn.close()
