"""Pending joins on a running worker: rows whose parent has not come show in
``cdcapp_pending_joins`` and on the status data, survive a restart (the worker finds them in its
state when it takes the partitions over), and leave once the parent arrives.

The pipeline reads source topics of its own; the test writes Debezium events there itself, so
that a child can come without its parent, which a source with foreign keys would not allow."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from cdcapp.clickhouse.client import open_target
from cdcapp.config import Settings
from cdcapp.debezium.encode import build_envelope
from cdcapp.kafka_admin import produce_one, source_topic
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.worker_process import WorkerProcess

pytestmark = pytest.mark.stack

ROWS = {
    "customers": {"id": 1, "email": "a@example.com", "name": "Ana", "country": "PT", "city": "Porto",
                  "created_at": 1_790_000_000_000},
    "products": {"id": 3, "name": "Lamp", "category": "home", "price": "9.90", "created_at": 1_790_000_000_000},
    "orders": {"id": 5, "customer_id": 1, "order_date": 1_790_000_000_000, "status": "paid", "total": "19.80"},
    "order_items": {"id": 11, "order_id": 5, "product_id": 3, "quantity": 2, "price": "9.90"},
}


def send(pipeline: Pipeline, table: str, seq: int) -> None:
    now = int(time.time() * 1000)
    value = build_envelope(table=table, op="c", before=None, after=ROWS[table], source_id="pg", db_name="shop",
                           seq=seq, change_ts_ms=now, snapshot=False, publish_ts_ms=now)
    key = orjson.dumps({"id": ROWS[table]["id"]})
    asyncio.run(produce_one(pipeline.settings.kafka_bootstrap,
                            source_topic(pipeline.settings.source_topic_prefix, table), key, orjson.dumps(value)))


def pending(worker: WorkerProcess) -> dict[str, float]:
    return {labels["entity"]: value for labels, value in worker.metric_samples("cdcapp_pending_joins")}


def live(worker: WorkerProcess) -> dict:
    with urllib.request.urlopen(worker.url + "/status/live/", timeout=5) as response:
        return orjson.loads(response.read())


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return found


def test_rows_waiting_for_a_parent_are_counted_across_a_restart(stack: Settings, tmp_path: Path) -> None:
    pipeline = Pipeline.fresh(stack, tmp_path, prefix="pj", own_sources=True, CDCAPP_PARTITIONS="2")
    try:
        worker = pipeline.start_worker()
        # The item and its order arrive; the order's customer does not.
        for seq, table in enumerate(("products", "orders", "order_items"), start=1):
            send(pipeline, table, seq)
        until(lambda: pending(worker).get("orders") == 1 and pending(worker).get("order_items") == 1, 120,
              "the order and its item waiting for the customer")
        assert pending(worker).get("products") == 0
        oldest = {labels["entity"]: value
                  for labels, value in worker.metric_samples("cdcapp_pending_join_oldest_seconds")}
        assert oldest["orders"] >= 0 and oldest["customers"] == 0
        shown = until(lambda: live(worker).get("pending_joins", {}).get("orders"), 30,
                     "the status page's data")
        assert shown["rows"] == 1

        # A new worker process finds them in the state it recovers.
        pipeline.stop()
        pipeline.workers.clear()
        worker = pipeline.start_worker()
        until(lambda: pending(worker).get("orders") == 1 and pending(worker).get("order_items") == 1, 120,
              "the waiting rows found again after the restart")

        send(pipeline, "customers", 4)
        until(lambda: pending(worker).get("orders") == 0 and pending(worker).get("order_items") == 0, 120,
              "nothing waiting once the customer came")
        target = open_target(pipeline.settings.resolved_clickhouse_url, pipeline.database)
        try:
            until(lambda: target.query(f"SELECT count() FROM {pipeline.database}.fact_order_current")[0][0] == 1,
                  60, "the fact row")
        finally:
            target.close()
    finally:
        pipeline.remove()
