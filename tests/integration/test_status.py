"""``cdcapp status`` against the real stack: healthy with a pipeline running; unhealthy, naming
the stage, while ClickHouse is stopped and while a connector is not running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from cdcapp import stack as native_stack
from cdcapp.config import Settings
from cdcapp.stack import core
from cdcapp.stack.connect import rest
from cdcapp.stack.connectors import Connector
from cdcapp.tools.pipeline import Pipeline

pytestmark = pytest.mark.stack


def status(pipeline: Pipeline) -> tuple[int, dict]:
    env = os.environ | pipeline.env
    done = subprocess.run([sys.executable, "-m", "cdcapp.cli", "status", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    return done.returncode, orjson.loads(done.stdout)


def failing(found: dict) -> set[str]:
    return {check["area"] for check in found["checks"] if not check["ok"]}


def test_status_says_what_is_unhealthy_and_exits_non_zero(stack: Settings, tmp_path: Path) -> None:
    pipeline = Pipeline.fresh(stack, tmp_path, prefix="st", own_sources=True, CDCAPP_PARTITIONS="2")
    worker = pipeline.start_worker()
    try:
        code, found = status(pipeline)
        assert (code, found["healthy"], failing(found)) == (0, True, set()), found
        (seen,) = [c for c in found["checks"] if c["area"] == "workers"]
        assert seen["name"] == worker.url and seen["data"]["app"] == pipeline.settings.app_id

        core.service("clickhouse", stack).stop()
        try:
            code, found = status(pipeline)
            assert (code, failing(found)) == (1, {"clickhouse"}), found
        finally:
            native_stack.up(stack, echo=lambda line: None)

        connector = Connector(stack, "postgres")
        rest(connector.connector_url + "/pause", method="PUT")
        try:
            deadline = time.monotonic() + 60
            while rest(connector.connector_url + "/status")["connector"]["state"] != "PAUSED":
                assert time.monotonic() < deadline, "the connector did not pause"
                time.sleep(0.5)
            code, found = status(pipeline)
            assert (code, failing(found)) == (1, {"capture"}), found
            (paused,) = [c for c in found["checks"] if c["area"] == "capture" and not c["ok"]]
            assert paused["name"] == "cdcapp-postgres" and "PAUSED" in paused["detail"]
        finally:
            rest(connector.connector_url + "/resume", method="PUT")
            native_stack.up(stack, echo=lambda line: None)

        code, found = status(pipeline)
        assert (code, failing(found)) == (0, set()), found
    finally:
        pipeline.remove()
