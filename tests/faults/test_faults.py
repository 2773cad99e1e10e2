"""The fault matrix (``make test-faults``): each fault strikes while the generator writes to the
source, then the ground-truth check must find ClickHouse equal to the OLTP join.

One pipeline (a consumer group, internal topics and a ClickHouse database of its own) lives
through every fault in turn, as a deployed one would; it first catches up with the history of
the shared source topics, so that each fault's recovery time (from the end of the fault to
``verify`` equal) measures the fault, not the history. The services struck are the stack's own:
the tests restore them as an operator would, with ``cdcapp stack up``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver import Client

from cdcapp import stack as native_stack
from cdcapp.config import Settings
from cdcapp.kafka_admin import end_offsets
from cdcapp.sources.connections import connect, connect_sqlite, create_oltp_schema
from cdcapp.stack import core
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.verify import Report
from cdcapp.tools.workload import BackgroundWorkload
from tests.faults.conftest import FaultResult

pytestmark = [pytest.mark.stack, pytest.mark.faults, pytest.mark.timeout(900)]

#: source changes/s while a fault strikes: a steady shop, well inside one worker's capacity
RATE = 200
#: how long the load runs before the fault
LEAD_S = 5.0
#: longest wait for ``verify`` equal after a fault
SETTLE_S = 600.0


@pytest.fixture(scope="module")
def pipeline(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    pipeline = Pipeline.fresh(stack, tmp_path_factory.mktemp("faults"), prefix="f")
    pipeline.start_worker()
    report = pipeline.verify("postgres", wait_s=SETTLE_S)
    assert report.equal, report.render()
    yield pipeline
    pipeline.remove()


def load(pipeline: Pipeline, kind: str = "postgres", sqlite_path: Path | None = None) -> BackgroundWorkload:
    workload = BackgroundWorkload(lambda: connect(kind, pipeline.settings, sqlite_path), kind,  # type: ignore[arg-type]
                                  rate=RATE, seed=time.time_ns() % 100_000)
    workload.start()
    time.sleep(LEAD_S)
    return workload


def dead_letters(pipeline: Pipeline) -> int:
    topic = f"{pipeline.settings.internal_topic_prefix}.dlq"
    return sum(asyncio.run(end_offsets(pipeline.settings.kafka_bootstrap, [topic])).values())


def settle(record: list[FaultResult], pipeline: Pipeline, fault: str, workload: BackgroundWorkload,
           dead_before: int, kind: str = "postgres", source_id: str | None = None,
           sqlite_path: Path | None = None, note: str = "", written_before: int = 0) -> Report:
    """Stop the load as the fault ends, wait for ``verify``, record the row of the matrix."""
    ended = time.monotonic()
    written = written_before + workload.finish()
    report = pipeline.verify(kind, source_id, sqlite_path, wait_s=SETTLE_S)
    record.append(FaultResult(
        fault=fault, source=kind, changes_written=written,
        rows_verified=sum(t.expected_rows for t in report.tables),
        dead_letters=dead_letters(pipeline) - dead_before, recover_s=time.monotonic() - ended,
        equal=report.equal, note=note,
    ))
    return report


def live_worker(pipeline: Pipeline):
    return next(w for w in pipeline.workers if w.process and w.process.poll() is None)


def test_worker_sigkilled_five_times(pipeline: Pipeline, record: list[FaultResult]) -> None:
    dead = dead_letters(pipeline)
    workload = load(pipeline)
    worker = live_worker(pipeline)
    for _ in range(5):
        worker.kill()
        # Restarted as a supervisor would: same web port, so same RocksDB folder, so it recovers
        # only the changelog written since its last flush.
        worker.start().wait_ready()
        time.sleep(3)
    report = settle(record, pipeline, "worker SIGKILLed 5 times", workload, dead)
    assert report.equal, report.render()


def test_clickhouse_stopped_for_a_minute(pipeline: Pipeline, record: list[FaultResult], stack: Settings) -> None:
    dead = dead_letters(pipeline)
    workload = load(pipeline)
    clickhouse = core.service("clickhouse", stack)
    clickhouse.stop()
    time.sleep(60)
    native_stack.up(stack, echo=lambda line: None)
    report = settle(record, pipeline, "ClickHouse stopped for 60 s", workload, dead)
    assert report.equal, report.render()


def test_broker_killed_and_restarted(pipeline: Pipeline, record: list[FaultResult], stack: Settings) -> None:
    """After the broker returns, PostgreSQL capture must resume: by itself, or because ``stack
    status`` found the connector stalled (an orphaned walsender holding the slot, minutes later)
    and ``stack up`` healed it."""
    report = kill_and_restart(pipeline, record, stack, "kafka", down_s=15, fault="Kafka broker")
    assert report.equal, report.render()


def test_connect_killed_and_restarted(pipeline: Pipeline, record: list[FaultResult], stack: Settings) -> None:
    report = kill_and_restart(pipeline, record, stack, "connect", down_s=10, fault="Kafka Connect")
    assert report.equal, report.render()


def kill_and_restart(pipeline: Pipeline, record: list[FaultResult], stack: Settings, service: str, down_s: float,
                     fault: str) -> Report:
    """SIGKILL a service of the stack under load, bring it back with ``stack up`` after ``down_s``,
    and settle with an operator healing what the restart leaves stalled."""
    dead = dead_letters(pipeline)
    workload = load(pipeline)
    os.kill(core.service(service, stack).pid(), signal.SIGKILL)
    time.sleep(down_s)
    native_stack.up(stack, echo=lambda line: None)
    with Operator(stack) as operator:
        report = settle(record, pipeline, f"{fault} SIGKILLed, restarted after {down_s:.0f} s", workload, dead)
    record[-1].note = operator.note
    return report


class Operator(threading.Thread):
    """What a cron'd ``cdcapp stack status || cdcapp stack up`` does, while the block runs: every
    few seconds, ``stack up`` when ``stack status`` reports a service down or stalled."""

    def __init__(self, stack: Settings, interval_s: float = 5.0) -> None:
        super().__init__(daemon=True, name="operator")
        self.stack, self.interval_s = stack, interval_s
        self.started = time.monotonic()
        self.healed: list[tuple[float, str]] = []
        self._stop_requested = threading.Event()

    def run(self) -> None:
        while not self._stop_requested.wait(self.interval_s):
            unwell = [(st.name, st.detail.splitlines()[0]) for st in core.status(self.stack) if not st.up]
            if unwell:
                self.healed.extend((time.monotonic() - self.started, f"{name} ({why[:60]})") for name, why in unwell)
                native_stack.up(self.stack, echo=lambda line: None)

    @property
    def note(self) -> str:
        return "; ".join(f"{what} healed by stack up {at:.0f} s after the restart" for at, what in self.healed)

    def __enter__(self) -> "Operator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_requested.set()
        self.join(120)


def test_sqlite_relay_sigkilled(pipeline: Pipeline, record: list[FaultResult], tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    source_id = f"sqlite-{pipeline.settings.app_id}"
    conn = connect_sqlite(db)
    create_oltp_schema("sqlite", conn)
    conn.close()

    def relay() -> subprocess.Popen:
        with open(tmp_path / "relay.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "cdcapp.cli", "capture", "sqlite", "--db", str(db),
                                     "--source-id", source_id], stdout=log, stderr=subprocess.STDOUT)

    dead = dead_letters(pipeline)
    process = relay()
    workload = load(pipeline, "sqlite", db)
    try:
        for _ in range(3):
            process.send_signal(signal.SIGKILL)
            process.wait()
            time.sleep(2)
            process = relay()
            time.sleep(3)
        report = settle(record, pipeline, "SQLite relay SIGKILLed 3 times", workload, dead, "sqlite", source_id, db)
    finally:
        process.terminate()
        process.wait(30)
    assert report.equal, report.render()


def test_poison_row_is_dead_lettered_while_the_rest_flows(pipeline: Pipeline, record: list[FaultResult],
                                                          stack: Settings) -> None:
    """``fact_order.quantity`` narrowed to UInt8 in ClickHouse by hand: an item of 300 is refused
    by the server's driver. That row alone goes to the dead-letter topic while every table keeps
    flowing; once the column is widened back, the item's next change repairs it.

    The item sits in a completed order of its own, whose items the generator never changes; the
    generator may still rename its product or delete the order, which sends the fact row again (one
    more dead letter) or deletes it (nothing left to miss). Any other item of more than 255 (an
    earlier run's poison, in the shared source database) that is sent meanwhile is refused too,
    rightly: the check is that exactly such rows are missing, and every other row is stored."""
    database = pipeline.database
    client = Client("127.0.0.1", port=stack.clickhouse_port)
    dead = dead_letters(pipeline)
    client.execute(f"ALTER TABLE {database}.fact_order MODIFY COLUMN quantity UInt8")
    workload = load(pipeline)
    conn = connect("postgres", pipeline.settings)

    def too_large() -> set[int]:
        """The items whose quantity a UInt8 cannot hold."""
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM order_items WHERE quantity > 255")
            found = {row[0] for row in cur.fetchall()}
        conn.commit()
        return found

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT c.id, p.id, p.price FROM customers c, products p ORDER BY c.id DESC, p.id DESC LIMIT 1")
            customer_id, product_id, price = cur.fetchone()
            cur.execute("INSERT INTO orders (customer_id, order_date, status, total) "
                        "VALUES (%s, now(), 'completed', %s) RETURNING id", (customer_id, 300 * price))
            (order_id,) = cur.fetchone()
            cur.execute("INSERT INTO order_items (order_id, product_id, quantity, price) "
                        "VALUES (%s, %s, 300, %s) RETURNING id", (order_id, product_id, price))
            (poison,) = cur.fetchone()
        conn.commit()
        time.sleep(5)
        written = workload.finish()
        report = pipeline.verify("postgres", wait_s=60)
        fact = next(t for t in report.tables if t.table == "fact_order")
        others = [t for t in report.tables if t is not fact]
        assert all(t.equal for t in others), report.render()
        refusable = too_large()
        wrong = ({row[0] for row in fact.missing} | {row[0] for row in fact.unexpected}
                 | {expected[0] for expected, _ in fact.different})
        assert wrong <= refusable, (sorted(wrong - refusable), report.render())
        assert poison in wrong or poison not in refusable, report.render()
        assert dead_letters(pipeline) - dead >= 1

        # Repair: the column widened back, the refused items' next change flows.
        client.execute(f"ALTER TABLE {database}.fact_order MODIFY COLUMN quantity Int32")
        workload = BackgroundWorkload(lambda: connect("postgres", pipeline.settings), "postgres", rate=RATE, seed=3)
        workload.start()
        with conn.cursor() as cur:
            cur.execute("UPDATE order_items SET quantity = quantity + 1 WHERE quantity > 255")
        conn.commit()
    finally:
        conn.close()
    report = settle(record, pipeline, "poison row ClickHouse refuses (UInt8 column, quantity 300)", workload, dead,
                    note=f"the row dead-lettered, the {written:,} changes around it stored; recovered = from "
                         "widening the column back to the item's next change stored", written_before=written)
    assert report.equal, report.render()
