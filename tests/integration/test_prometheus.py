"""The native stack's Prometheus scrapes a running worker: the per-table end-to-end lag, queried
from Prometheus's API, has a p99 under a second at a light load (20 changes/s); every metric the
Grafana dashboard queries is one the worker exports; its log lines are JSON when asked."""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdcapp.config import Settings
from cdcapp.sources.connections import connect_sqlite
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.workload import BackgroundWorkload
from tests.integration.sqlite_source import sqlite_source

pytestmark = pytest.mark.stack

TABLES = {"dim_customer", "dim_product", "fact_order"}
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "cdcapp.json"


def query(stack: Settings, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{stack.prometheus_port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = orjson.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_sees_each_tables_lag_under_a_second(stack: Settings, tmp_path: Path) -> None:
    pipeline = Pipeline.fresh(stack, tmp_path, prefix="pm", own_sources=True, CDCAPP_PARTITIONS="2",
                              CDCAPP_LOG_FORMAT="json")
    app_id = pipeline.settings.app_id
    with sqlite_source(tmp_path, f"sqlite-{app_id}", pipeline.settings.source_topic_prefix) as db:
        worker = pipeline.start_worker()
        app = BackgroundWorkload(lambda: connect_sqlite(db), "sqlite", rate=20, seed=5)
        app.start()
        try:
            deadline = time.monotonic() + 180
            while not query(stack, f'up{{app="{app_id}"}} == 1'):
                assert time.monotonic() < deadline, "Prometheus never scraped the worker"
                time.sleep(2)
            # A minute of steady load, then the p99 over the last 30 s, as an operator's panel shows it.
            steady = time.monotonic() + 60
            p99: dict[str, float] = {}
            while time.monotonic() < steady or set(p99) != TABLES:
                assert time.monotonic() < deadline + 120, f"no lag for every table in Prometheus: {p99}"
                time.sleep(5)
                p99 = {r["metric"]["table"]: float(r["value"][1]) for r in query(stack, (
                    "histogram_quantile(0.99, sum by (table, le) "
                    f'(rate(cdcapp_end_to_end_lag_seconds_bucket{{app="{app_id}"}}[30s])))'))
                    if r["value"][1] != "NaN"}
            with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
                exported = {family.name for family in text_string_to_metric_families(response.read().decode())}
        finally:
            app.finish()
            pipeline.remove()
    print(f"p99 end-to-end lag per table, from Prometheus: {p99}")
    assert all(seconds < 1.0 for seconds in p99.values()), p99
    # Every metric the Grafana dashboard queries is one the worker exports.
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    queried = {re.sub(r"_(bucket|count|sum|total)$", "", name) for panel in dashboard["panels"]
               for target in panel["targets"] for name in re.findall(r"cdcapp_\w+", target["expr"])}
    assert queried and queried <= exported, queried - exported
    # CDCAPP_LOG_FORMAT=json: the worker's log lines are JSON objects, one per flush among them.
    lines = [orjson.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith('{"ts"')]
    assert any(line["msg"].startswith("flushed ") and line["level"] == "info" for line in lines), lines[-5:]


def test_prometheus_scrapes_kafka_connect_and_debezium(stack: Settings) -> None:
    """Connect's and Debezium's JMX metrics, through the exporter agent Connect runs with."""
    deadline = time.monotonic() + 120
    while True:
        connected = {r["metric"].get("server"): float(r["value"][1]) for r in query(
            stack, 'debezium_postgres_connector_metrics_connected{job="kafka-connect", context="streaming"}')}
        connectors = query(stack, 'kafka_connect_connect_worker_metrics_connector_count{job="kafka-connect"}')
        if connected.get("postgres") == 1.0 and connectors and float(connectors[0]["value"][1]) >= 2:
            break
        assert time.monotonic() < deadline, (connected, connectors)
        time.sleep(2)
