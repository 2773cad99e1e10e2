"""The worker's status page in headless Chromium (Debian's ``chromium``), against a running
pipeline: live numbers for every table, and a connector that is not capturing shown in red."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cdcapp import stack as native_stack
from cdcapp.config import Settings
from cdcapp.sources.connections import connect_sqlite
from cdcapp.stack.connect import rest
from cdcapp.stack.connectors import Connector
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.workload import BackgroundWorkload
from tests.integration.sqlite_source import sqlite_source

pytestmark = pytest.mark.stack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(url: str, *args: str) -> str:
    """The page as Chromium has it once its script ran for a few (virtual) seconds."""
    assert CHROMIUM, "Debian's chromium package is needed (.ci/run installs it)"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--window-size=1366,900", "--virtual-time-budget=5000", *args, url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def test_the_status_page_shows_live_numbers_and_a_stopped_connector_in_red(stack: Settings, tmp_path: Path) -> None:
    pipeline = Pipeline.fresh(stack, tmp_path, prefix="pg", own_sources=True, CDCAPP_PARTITIONS="2")
    source_id = f"sqlite-{pipeline.settings.app_id}"
    with sqlite_source(tmp_path, source_id, pipeline.settings.source_topic_prefix) as db:
        worker = pipeline.start_worker()
        app = BackgroundWorkload(lambda: connect_sqlite(db), "sqlite", rate=20, seed=9)
        app.start()
        connector = Connector(stack, "postgres")
        try:
            def number(dom: str, cell: str) -> float:
                found = re.search(rf'data-table="fact_order">.*?<td class="{cell}">([\d.,]+)<', dom, re.S)
                return float(found.group(1).replace(",", "")) if found else 0.0

            def stored_and_flowing() -> str | None:
                dom = browse(worker.url + "/", "--dump-dom")
                return dom if number(dom, "num rows") > 0 and number(dom, "rate") > 0 else None

            dom = until(stored_and_flowing, 120, "fact_order's rows and its live rate on the page")
            assert 'id="health" class="ok-text">healthy' in dom
            assert re.search(r'class="card connector ok" data-name="cdcapp-postgres"', dom)
            # Its newest snapshot, from the connector's notifications (the stack's first deploy took one).
            card = dom.split('data-name="cdcapp-postgres"', 1)[1].split('class="card', 1)[0]
            assert re.search(r'class="snapshot[^"]*" data-state="(completed|running|aborted)">[^<]*(initial|incremental) '
                             r'snapshot of \d+ tables', card), card
            browse(worker.url + "/", f"--screenshot={tmp_path / 'healthy.png'}")
            assert (tmp_path / "healthy.png").stat().st_size > 10_000

            rest(connector.connector_url + "/pause", method="PUT")
            dom = until(lambda: (d := browse(worker.url + "/", "--dump-dom")) and
                        re.search(r'class="card connector bad" data-name="cdcapp-postgres"', d) and d,
                        60, "the paused connector in red")
            assert 'class="bad-text">UNHEALTHY' in dom
            browse(worker.url + "/", f"--screenshot={tmp_path / 'stalled.png'}")
            assert (tmp_path / "stalled.png").stat().st_size > 10_000
        finally:
            rest(connector.connector_url + "/resume", method="PUT")
            native_stack.up(stack, echo=lambda line: None)
            app.finish()
            pipeline.remove()
