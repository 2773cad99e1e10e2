"""``cdcapp demo``: the whole pipeline once, end to end, on the local stack.

Stack up -> a worker -> the e-commerce workload on PostgreSQL -> wait until ClickHouse equals the
OLTP join (the ground-truth check) -> revenue by country and category from ClickHouse.
"""

from __future__ import annotations

import time
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from cdcapp import stack
from cdcapp.config import Settings
from cdcapp.sources.connections import connect
from cdcapp.tools.console import WorkloadProgress
from cdcapp.tools.workload import run_workload
from cdcapp.model.spec import load_spec
from cdcapp.tools.verify import ClickHouseReader, verify
from cdcapp.tools.worker_process import WorkerProcess

REVENUE_BY_COUNTRY_AND_CATEGORY = """
SELECT customer_country, product_category, count() AS items, sum(revenue) AS revenue
FROM {db}.fact_order_current
WHERE _source = '{source}'
GROUP BY customer_country, product_category
ORDER BY revenue DESC
LIMIT {limit}
"""


def run_demo(settings: Settings, changes: int, seed: int, settle_s: float, console: Console) -> bool:
    console.rule("1. the stack")
    stack.up(settings, echo=console.print)
    if not settings.clickhouse_url:
        # The stack runs a ClickHouse server: use it, so the result can be explored afterwards
        # (clickhouse-client --port <CLICKHOUSE_PORT>) while no worker runs.
        url = f"clickhouse://default@127.0.0.1:{settings.clickhouse_port}/{settings.database()}"
        settings = settings.model_copy(update={"clickhouse_url": url})
    console.rule("2. a pipeline worker")
    worker = WorkerProcess({"CDCAPP_CLICKHOUSE_URL": settings.clickhouse_url}, settings.web_port,
                           settings.state_path / "logs" / "worker-demo.log")
    if worker.status() is not None:
        console.print(f"a worker already answers on {worker.url}; using it")
    else:
        worker.start()
        console.print(f"worker started, log {worker.log_path}")
    try:
        worker.wait_ready()
        console.print(f"worker ready: status page {worker.url}/ (metrics {worker.url}/metrics)")
        console.rule(f"3. workload: {changes} row changes on PostgreSQL")
        conn = connect("postgres", settings)
        try:
            with WorkloadProgress(changes, None) as progress:
                stats = run_workload(conn, "postgres", rate=0, changes=changes, seed=seed, on_progress=progress.update)
                progress.finish(stats)
        finally:
            conn.close()
        console.print(f"{stats.changes} changes at {stats.rate:.0f}/s")
        console.rule("4. ground truth: ClickHouse *_current views == OLTP join")
        spec = load_spec(settings.spec_path)
        started = time.monotonic()
        report = verify(settings, spec, "postgres", wait_s=settle_s, worker_url=worker.url)
        console.print(report.render(limit=5))
        console.print(f"{'equal' if report.equal else 'NOT equal'} after {time.monotonic() - started:.1f}s")
        console.rule("5. revenue by country and category (ClickHouse)")
        reader = ClickHouseReader(settings, spec, worker_url=worker.url)
        try:
            rows = reader.query(REVENUE_BY_COUNTRY_AND_CATEGORY.format(db=reader.database, source="postgres", limit=15))
        finally:
            reader.close()
        table = Table("country", "category", "items", "revenue")
        for country, category, items, revenue in rows:
            table.add_row(str(country), str(category), str(items), f"{Decimal(str(revenue)):.2f}")
        console.print(table)
        return report.equal
    finally:
        worker.stop()
