"""The parts of ``cdcapp bench``: drain, freshness, initial load and fan-out.

Every part runs a pipeline of its own (``cdcapp.tools.pipeline``) on a benchmark source of its
own (``source.BenchSource``), and ends with the ground-truth check: a rate that was not verified
equal is not reported as a result.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cdcapp.clickhouse.client import open_target
from cdcapp.config import Settings
from cdcapp.kafka_admin import end_offsets, group_lag, read_topic, sink_topic, source_topic, stage_topic
from cdcapp.model.spec import Spec
from cdcapp.sources.connections import connect, split_statements
from cdcapp.tools.bench.baselines import bare_agent, raw_copy
from cdcapp.tools.bench.source import BenchSource
from cdcapp.tools.pipeline import Pipeline
from cdcapp.tools.worker_process import WorkerProcess
from cdcapp.tools.workload import run_workload

Echo = Callable[[str], None]
MIB = 1024 * 1024


def _pg(source: BenchSource, synchronous_commit: bool = False) -> Any:
    conn = connect("postgres", source.settings)
    if not synchronous_commit:
        # The workload's commits return before the WAL flush: the bench measures the pipeline, not
        # PostgreSQL's fsync. (Logical decoding reads only flushed WAL, so markers, which time a
        # commit, keep synchronous commits: theirs flushes everything before it too.)
        conn.execute("SET synchronous_commit TO off")
        conn.commit()
    return conn


def pipeline_topics(pipeline: Pipeline, source: BenchSource) -> list[str]:
    prefix = pipeline.settings.internal_topic_prefix
    return [*source.topics(pipeline.spec), stage_topic(prefix), sink_topic(prefix)]


def wait_caught_up(pipeline: Pipeline, source: BenchSource, worker: WorkerProcess, timeout_s: float,
                   poll_s: float = 0.5) -> float:
    """Until the pipeline's consumer group has committed every record of every topic it reads,
    twice in a row; returns that moment (``time.monotonic``). A commit follows the sink's insert
    and every send the record caused, so nothing is in flight then."""
    topics = pipeline_topics(pipeline, source)
    bootstrap = pipeline.settings.kafka_bootstrap
    deadline = time.monotonic() + timeout_s
    zero_since: float | None = None
    while time.monotonic() < deadline:
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.process.returncode}; see {worker.log_path}")
        now = time.monotonic()
        lag = asyncio.run(group_lag(bootstrap, pipeline.settings.app_id, topics))
        if lag == 0:
            if zero_since is not None:
                return zero_since
            zero_since = now
        else:
            zero_since = None
        time.sleep(poll_s)
    raise TimeoutError(f"pipeline {pipeline.settings.app_id} still lagging after {timeout_s:.0f}s")


def last_insert(worker: WorkerProcess, caught_up: float) -> float:
    """When the worker's last ClickHouse insert returned (``time.monotonic``), for a worker found
    caught up at ``caught_up``: the end of its work, as the raw copy's time ends at its last insert.
    The caught-up moment itself comes later by up to Faust's commit interval (2.8 s) plus a poll,
    a seventh of a 20 s drain."""
    inserted = worker.metric_total("cdcapp_sink_last_flush_timestamp_seconds")
    if not inserted:
        return caught_up
    return min(caught_up, inserted - (time.time() - time.monotonic()))


def _verified(pipeline: Pipeline, source: BenchSource, wait_s: float = 300.0) -> bool:
    return pipeline.verify("postgres", source_id=source.name, wait_s=wait_s).equal


def _mib(value: int | None) -> float | None:
    return round(value / MIB, 1) if value is not None else None


def _batch_sizes(worker: WorkerProcess) -> dict[str, float]:
    """Mean events per batch, per kind of agent (stage: source runs and stage records; sink: sink records)."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for name, into in (("cdcapp_batch_events_sum", sums), ("cdcapp_batch_events_count", counts)):
        for labels, value in worker.metric_samples(name):
            kind = labels["agent"].split(".")[0]
            into[kind] = into.get(kind, 0.0) + value
    return {kind: round(sums[kind] / counts[kind], 1) for kind in sums if counts.get(kind)}


@dataclass
class Drained:
    source: BenchSource
    pipeline: Pipeline
    worker: WorkerProcess
    result: dict[str, Any] = field(default_factory=dict)


def drain(base: Settings, spec: Spec, run_id: str, changes: int, seed: int, log_dir: Path, echo: Echo) -> Drained:
    """N source changes queued while no worker runs, then a fresh worker until ClickHouse is equal."""
    source = BenchSource(base, "bench", f"bench{run_id}")
    echo(f"drain: fresh source database {source.name}, topics {source.topic_prefix}.*")
    source.reset()
    source.deploy_connector()
    conn = _pg(source)
    try:
        stats = run_workload(conn, "postgres", rate=0, changes=changes, seed=seed)
    finally:
        conn.close()
    echo(f"drain: {stats.changes:,} changes written at {stats.rate:,.0f}/s; waiting for Debezium")
    records = source.wait_published(spec, at_least=stats.changes)
    topics = source.topics(spec)
    ch_url = f"clickhouse://default@127.0.0.1:{base.clickhouse_port}/bench{run_id}_raw"
    # The copy takes seconds and the machine is shared with the stack: the median of three runs.
    runs = sorted((raw_copy(base.kafka_bootstrap, topics, ch_url, f"bench{run_id}_raw") for _ in range(3)),
                  key=lambda r: r["rate"])
    raw = {**runs[1], "runs": [r["rate"] for r in runs]}
    echo(f"drain: raw copy {raw['rate']:,.0f} records/s (median of {', '.join(f'{r:,.0f}' for r in raw['runs'])})")
    bare = bare_agent(base.kafka_bootstrap, topics, records, app_id=f"{source.topic_prefix}bare")
    echo(f"drain: bare Faust agent {bare['rate']:,.0f} records/s")
    pipeline = Pipeline.fresh(source.settings, log_dir, prefix=f"bench{run_id}w")
    started = time.monotonic()
    worker = pipeline.start_worker(wait=True)
    ready = time.monotonic()
    cpu_at_ready = worker.cpu_seconds() or 0.0
    echo(f"drain: worker ready after {ready - started:.1f}s; draining {records:,} records")
    done = last_insert(worker, wait_caught_up(pipeline, source, worker, timeout_s=3600))
    # Less noisy than the rate on a shared machine: what the drain cost the worker, whatever waited.
    cpu = (worker.cpu_seconds() or 0.0) - cpu_at_ready
    equal = _verified(pipeline, source)
    seconds = done - ready
    sink_rows = worker.metric_total("cdcapp_sink_rows_total")
    batches = _batch_sizes(worker)
    rate = stats.changes / seconds
    result = {
        "source_changes": stats.changes, "records": records, "seconds": round(seconds, 2),
        "startup_seconds": round(ready - started, 2), "rate": round(rate, 1), "verified_equal": equal,
        "sink_rows": int(sink_rows), "sink_rows_per_change": round(sink_rows / stats.changes, 3),
        "peak_rss_mib": _mib(worker.peak_rss_bytes()),
        "worker_cpu_seconds": round(cpu, 2), "worker_cpu_us_per_change": round(cpu / stats.changes * 1e6, 1),
        "events_per_batch": batches,
        "stage_messages": int(worker.metric_total("cdcapp_events_total")),
        "raw_copy": raw, "bare_agent": bare,
        "ratio_to_raw_copy": round(rate / raw["rate"], 4),
    }
    echo(f"drain: {rate:,.0f} source changes/s ({seconds:.1f}s), {result['ratio_to_raw_copy']:.3f} of the raw copy, "
         f"{result['worker_cpu_us_per_change']:.0f} µs of worker CPU per change, verify {'equal' if equal else 'NOT EQUAL'}")
    return Drained(source, pipeline, worker, result)


#: above this rate the workload is split between processes. On the 2-core machine one process is
#: best: a second one costs the pipeline more CPU than it adds rate, and the two generators' writes
#: conflict (a rolled-back transaction reloads every live id).
GENERATOR_RATE = 10_000


def _generate(source: BenchSource, rate: float, duration_s: float, seed: int) -> tuple[int, float]:
    conn = _pg(source)
    try:
        stats = run_workload(conn, "postgres", rate=rate, duration=duration_s, seed=seed)
    finally:
        conn.close()
    return stats.changes, stats.elapsed_s


def _generate_in_processes(source: BenchSource, rate: float, duration_s: float) -> tuple[int, float]:
    """The workload at ``rate`` changes/s, from as many processes as that takes; (changes, seconds)."""
    processes = max(1, math.ceil(rate / GENERATOR_RATE))
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(_generate, [source] * processes, [rate / processes] * processes,
                             [duration_s] * processes, [int(rate) + i for i in range(processes)]))
    return sum(c for c, _ in runs), max(s for _, s in runs)


class Markers:
    """New order items written every ``interval_s`` into a marker order; each is timed from its
    commit to its first sight in ClickHouse's fact table (read there, not from any metric).

    The Debezium leg is timed too: the source topic's record timestamp (set by Connect's producer)
    against the commit, so that the rest is the pipeline's share."""

    def __init__(self, source: BenchSource, database: str, interval_s: float = 0.1, poll_s: float = 0.05) -> None:
        self.source = source
        self.database = database
        self.interval_s = interval_s
        self.poll_s = poll_s
        self.committed: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        #: order item id -> when Connect produced its change event (every new item, markers or not)
        self.published: dict[int, float] = {}
        self.stop = threading.Event()
        self.tapping = threading.Event()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def _parents(self, conn: Any) -> tuple[int, int]:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO customers (email, name, country, city, created_at) "
                        "VALUES ('marker@bench', 'Marker', 'ZZ', 'Bench', now()) RETURNING id")
            customer = cur.fetchone()[0]
            cur.execute("INSERT INTO products (name, category, price, created_at) "
                        "VALUES ('Marker', 'bench', 1.00, now()) RETURNING id")
            product = cur.fetchone()[0]
            cur.execute("INSERT INTO orders (customer_id, order_date, status, total) "
                        "VALUES (%s, now(), 'marker', 0) RETURNING id", (customer,))
            order = cur.fetchone()[0]
        conn.commit()
        return order, product

    def write(self) -> None:
        conn = _pg(self.source, synchronous_commit=True)
        try:
            order, product = self._parents(conn)
            while not self.stop.wait(self.interval_s):
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO order_items (order_id, product_id, quantity, price) "
                                "VALUES (%s, %s, 1, 1.00) RETURNING id", (order, product))
                    item = cur.fetchone()[0]
                conn.commit()
                with self.lock:
                    self.committed[item] = time.time()
        finally:
            conn.close()

    def watch(self, clickhouse_url: str) -> None:
        target = open_target(clickhouse_url, self.database)
        try:
            while not (self.stop.is_set() and self._pending() == []):
                pending = self._pending()
                if pending:
                    rows = target.query(
                        f"SELECT DISTINCT id FROM {target.database}.fact_order WHERE _source = '{self.source.name}' "
                        f"AND _is_deleted = 0 AND id IN ({','.join(map(str, pending))})")
                    now = time.time()
                    with self.lock:
                        for (item,) in rows:
                            self.seen.setdefault(int(item), now)
                if self.stop.is_set() and time.time() - max(self.committed.values(), default=0) > 30:
                    return  # what is not seen 30 s after the last marker counts as unseen
                time.sleep(self.poll_s)
        finally:
            self.done.set()
            target.close()

    def tap(self, bootstrap: str, topic: str) -> None:
        """Read the order items' source topic from its current end until the watcher is done."""
        asyncio.run(self._tap(bootstrap, topic))

    async def _tap(self, bootstrap: str, topic: str) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        ends = await end_offsets(bootstrap, [topic])
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(t, p) for t, p in ends])
            for (t, p), offset in ends.items():
                consumer.seek(TopicPartition(t, p), offset)
            self.tapping.set()
            while not self.done.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        after = orjson.loads(record.value).get("after") if record.value else None
                        if after is not None:
                            self.published.setdefault(int(after["id"]), record.timestamp / 1000)
        finally:
            self.tapping.set()
            await consumer.stop()

    def _pending(self) -> list[int]:
        with self.lock:
            return [i for i in self.committed if i not in self.seen]

    def latencies(self) -> list[tuple[float, float]]:
        """(commit time, seconds to visible) per marker seen, in commit order."""
        return sorted((t, self.seen[i] - t) for i, t in self.committed.items() if i in self.seen)

    def debezium_latencies(self) -> list[float]:
        """Seconds from commit to Connect's send, per marker published."""
        return [self.published[i] - t for i, t in self.committed.items() if i in self.published]


#: a marker's way, each step timed by the first record that carries it (producer timestamps)
HOPS = ("committed", "published", "subscribed", "joined", "fact", "visible")


class HopTrace:
    """Where a marker's time goes: the pipeline's internal records read back after a run, from the
    offsets the run started at (reading them during the run would compete for the same cores).

    - ``subscribed``: the later of its ``sub`` to the order and to the product (the item stage's, which
      read the change from its source topic);
    - ``joined``: the later of the order's and the product's ``info`` back to it;
    - ``fact``: its ``fact_order`` row on the sink topic (the item stage's second pass)."""

    def __init__(self, bootstrap: str, internal_prefix: str) -> None:
        self.bootstrap = bootstrap
        self.stage = stage_topic(internal_prefix)
        self.sink = sink_topic(internal_prefix)
        self.since: dict[tuple[str, int], int] = {}

    def start(self) -> None:
        self.since = asyncio.run(end_offsets(self.bootstrap, [self.stage, self.sink]))

    def read(self) -> dict[str, dict[str, float]]:
        """Hop -> item key -> when (s)."""
        return asyncio.run(self._read())

    async def _read(self) -> dict[str, dict[str, float]]:
        first: dict[str, dict] = {"subscribed": {}, "joined": {}, "fact": {}}
        async for record in read_topic(self.bootstrap, self.stage, self.since):
            at = record.timestamp / 1000
            for m in orjson.loads(record.value):
                if m["t"] == "sub" and m["c"] == "order_items":
                    first["subscribed"].setdefault((m["ck"], m["e"]), at)
                elif m["t"] == "info" and m["e"] == "order_items":
                    for child in m["k"]:
                        first["joined"].setdefault((child, m["r"]), at)
        async for record in read_topic(self.bootstrap, self.sink, self.since):
            for table, key, _, _ in orjson.loads(record.value):
                if table == "fact_order":
                    first["fact"].setdefault(key, record.timestamp / 1000)
        times: dict[str, dict[str, float]] = {"fact": first["fact"]}
        for hop in ("subscribed", "joined"):
            latest: dict[str, float] = {}
            for (key, _), at in first[hop].items():
                latest[key] = max(at, latest.get(key, at))
            times[hop] = latest
        return times


def hop_summary(markers: Markers, traced: dict[str, dict[str, float]]) -> dict[str, Any]:
    """p50/p99 of each step between consecutive hops over the markers traced end to end, and the
    mean of each step over the slowest 1 % of them (where a tail comes from); ``joined_in_batch``:
    markers whose sub or info did not go through the stage topic (their steps take no time)."""
    ways = []
    in_batch = 0
    for item, committed in markers.committed.items():
        key = f"{markers.source.name}|{item}"
        way = [committed, markers.published.get(item), *(traced[hop].get(key) for hop in HOPS[2:-1]),
               markers.seen.get(item)]
        if way[-2] is not None and None in way[2:-2]:
            # Its sub or info never crossed the stage topic: the batch that made its fact row
            # applied them (one worker holding both partitions), so they took place at that time.
            in_batch += 1
            for i in (3, 2):
                if way[i] is None:
                    way[i] = way[i + 1]
        if None not in way:
            ways.append([b - a for a, b in zip(way, way[1:])])
    if not ways:
        return {}
    ways.sort(key=sum)
    tail = ways[-max(1, len(ways) // 100):]
    steps = [f"{a}->{b}" for a, b in zip(HOPS, HOPS[1:])]
    return {"traced": len(ways), "joined_in_batch": in_batch, **{step: {
        "p50_s": _percentile([w[i] for w in ways], 0.5), "p99_s": _percentile([w[i] for w in ways], 0.99),
        "slowest_1pct_mean_s": round(statistics.mean(w[i] for w in tail), 3)} for i, step in enumerate(steps)}}


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (``/proc/stat``)."""
    ticks = [float(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # idle and iowait are the 4th and 5th; guest time is already counted in user and nice
    return sum(ticks[:8]) - ticks[3] - ticks[4], sum(ticks[:8])


def _percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None


def _latency_summary(latencies: list[float], written: int) -> dict[str, Any]:
    """Percentiles over every marker written: one never seen counts as slower than any seen, so a
    percentile that falls on one is unknown (None) rather than flattered."""
    ordered = sorted(latencies)

    def percentile(q: float) -> float | None:
        index = int(q * written)
        return round(ordered[index], 3) if index < len(ordered) else None

    third = max(1, len(latencies) // 3)
    first = statistics.median(latencies[:third]) if latencies else None
    last = statistics.median(latencies[-third:]) if latencies else None
    return {
        "p50_s": percentile(0.5), "p99_s": percentile(0.99), "max_s": round(ordered[-1], 3) if ordered else None,
        "first_third_p50_s": round(first, 3) if first is not None else None,
        "last_third_p50_s": round(last, 3) if last is not None else None,
        "flat": first is not None and last is not None and len(latencies) == written and last - first < 0.5,
    }


def freshness(drained: Drained, rates: list[float], duration_s: float, echo: Echo) -> list[dict[str, Any]]:
    """The generator at steady rates through Debezium, with markers timed commit -> visible."""
    results = []
    source, pipeline = drained.source, drained.pipeline
    for rate in rates:
        markers = Markers(source, pipeline.database)
        outcome: dict[str, Any] = {}

        def generate() -> None:
            try:
                outcome["stats"] = _generate_in_processes(source, rate, duration_s)
            finally:
                markers.stop.set()

        writer = threading.Thread(target=generate)
        marker_writer = threading.Thread(target=markers.write)
        watcher = threading.Thread(target=markers.watch, args=(pipeline.settings.resolved_clickhouse_url,))
        tap = threading.Thread(target=markers.tap, args=(
            source.base.kafka_bootstrap, source_topic(source.topic_prefix, "order_items")))
        trace = HopTrace(source.base.kafka_bootstrap, pipeline.settings.internal_topic_prefix)
        trace.start()
        tap.start()
        markers.tapping.wait(60)
        cpu_before, machine_before = drained.worker.cpu_seconds() or 0.0, machine_cpu()
        writer.start()
        time.sleep(1.0)  # the generator has read its live ids: the marker rows stay out of its picks
        marker_writer.start()
        watcher.start()
        writer.join()
        cpu = (drained.worker.cpu_seconds() or 0.0) - cpu_before
        busy, total = (after - before for after, before in zip(machine_cpu(), machine_before))
        marker_writer.join()
        watcher.join()
        tap.join()
        timed = markers.latencies()
        lat = [d for _, d in timed]
        debezium = markers.debezium_latencies()
        changes, seconds = outcome["stats"]
        result = {
            "target_rate": rate, "achieved_rate": round(changes / seconds, 1), "seconds": round(seconds, 1),
            "markers": len(markers.committed), "markers_seen": len(lat), **_latency_summary(lat, len(markers.committed)),
            # where the time goes: commit -> Connect's send, and the same percentiles of the whole
            "debezium_p50_s": _percentile(debezium, 0.5), "debezium_p99_s": _percentile(debezium, 0.99),
            # what the tail queues behind: the worker's CPU per change and how busy the whole machine was
            "worker_cpu_us_per_change": round(cpu / changes * 1e6, 1), "machine_busy": round(busy / total, 3),
            "hops": hop_summary(markers, trace.read()),
        }
        echo(f"freshness at {rate:,.0f}/s (achieved {result['achieved_rate']:,.0f}/s): p50 {result['p50_s']}s, "
             f"p99 {result['p99_s']}s, {len(lat)}/{len(markers.committed)} markers seen, "
             f"{'flat' if result['flat'] else 'GROWING'} "
             f"({result['first_third_p50_s']}s -> {result['last_third_p50_s']}s); "
             f"commit -> Debezium's send p50 {result['debezium_p50_s']}s, p99 {result['debezium_p99_s']}s; "
             f"{result['worker_cpu_us_per_change']:.0f} µs of worker CPU per change, machine "
             f"{result['machine_busy']:.0%} busy")
        for step, times in result["hops"].items():
            if step not in ("traced", "joined_in_batch"):
                echo(f"  {step:22} p50 {times['p50_s']}s  p99 {times['p99_s']}s  "
                     f"slowest 1 %: {times['slowest_1pct_mean_s']}s")
        results.append(result)
    drained.result["freshness_peak_rss_mib"] = _mib(drained.worker.peak_rss_bytes())
    drained.result["freshness_verified_equal"] = _verified(pipeline, source)
    return results


FILL_SQL = """
INSERT INTO customers (email, name, country, city, created_at)
  SELECT 'c' || g || '@load', 'Customer ' || g, (ARRAY['DE','FR','NL','ES','IT','PL','US','GB'])[1 + g %% 8],
         'City ' || (g %% 50), timestamp '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, %(customers)s) g;
INSERT INTO products (name, category, price, created_at)
  SELECT 'Product ' || g, (ARRAY['books','toys','garden','kitchen'])[1 + g %% 4], 1 + (g %% 9000) / 100.0,
         timestamp '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, %(products)s) g;
INSERT INTO orders (customer_id, order_date, status, total)
  SELECT 1 + g %% %(customers)s, timestamp '2024-02-01' + g * interval '1 second',
         (ARRAY['pending','paid','shipped','completed'])[1 + g %% 4], 0
  FROM generate_series(1, %(orders)s) g;
INSERT INTO order_items (order_id, product_id, quantity, price)
  SELECT 1 + g %% %(orders)s, CASE WHEN g <= %(hot_items)s THEN 1 ELSE 2 + g %% (%(products)s - 1) END,
         1 + g %% 5, 1 + (g %% 9000) / 100.0
  FROM generate_series(1, %(items)s) g;
"""


def initial_load(base: Settings, spec: Spec, run_id: str, items: int, hot_items: int, log_dir: Path,
                 echo: Echo, keep: bool = False) -> dict[str, Any]:
    """A pre-filled database snapshotted by Debezium, then drained; then the fan-out of its
    hottest product (product 1, with ``hot_items`` order items) renamed."""
    source = BenchSource(base, "benchload", f"benchload{run_id}")
    source.reset()
    sizes = {"items": items, "hot_items": hot_items, "orders": max(1, items // 4),
             "customers": max(1, items // 20), "products": max(2, items // 100)}
    conn = connect("postgres", source.settings)
    try:
        with conn.cursor() as cur:
            for statement in split_statements(FILL_SQL):
                cur.execute(statement, sizes)
        conn.commit()
    finally:
        conn.close()
    rows = sizes["items"] + sizes["orders"] + sizes["customers"] + sizes["products"]
    echo(f"initial load: {rows:,} rows in {source.name} ({items:,} order items); Debezium snapshot")
    snapshot_started = time.monotonic()
    source.deploy_connector()
    records = source.wait_published(spec, at_least=rows, quiet_s=5.0, timeout_s=3600)
    snapshot_s = time.monotonic() - snapshot_started
    pipeline = Pipeline.fresh(source.settings, log_dir, prefix=f"benchload{run_id}w")
    worker = pipeline.start_worker(wait=True)
    ready = time.monotonic()
    try:
        done = last_insert(worker, wait_caught_up(pipeline, source, worker, timeout_s=7200, poll_s=1.0))
        equal = _verified(pipeline, source, wait_s=600)
        seconds = done - ready
        result: dict[str, Any] = {
            "rows": rows, "records": records, "debezium_snapshot_seconds": round(snapshot_s, 1),
            "seconds": round(seconds, 1), "rate": round(rows / seconds, 1), "verified_equal": equal,
            "sink_rows": int(worker.metric_total("cdcapp_sink_rows_total")),
            "peak_rss_mib": _mib(worker.peak_rss_bytes()),
        }
        echo(f"initial load: {result['rate']:,.0f} rows/s ({seconds:.1f}s), verify {'equal' if equal else 'NOT EQUAL'}")
        result["fanout"] = fanout(pipeline, source, worker, hot_items, echo)
        return result
    finally:
        pipeline.stop()
        source.remove_connector()
        if not keep:
            source.cleanup([pipeline.settings.app_id])


def fanout(pipeline: Pipeline, source: BenchSource, worker: WorkerProcess, hot_items: int,
           echo: Echo) -> dict[str, Any]:
    new_name = f"Renamed {int(time.time())}"
    conn = connect("postgres", source.settings)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE products SET name = %s WHERE id = 1", (new_name,))
        conn.commit()
    finally:
        conn.close()
    started = time.monotonic()
    done = last_insert(worker, wait_caught_up(pipeline, source, worker, timeout_s=3600, poll_s=0.5))
    target = open_target(pipeline.settings.resolved_clickhouse_url, pipeline.database)
    try:
        shown = target.query(
            f"SELECT count() FROM {target.database}.fact_order_current WHERE _source = '{source.name}' "
            f"AND product_id = 1 AND product_name = '{new_name}'")[0][0]
    finally:
        target.close()
    result = {"children": hot_items, "rows_renamed": int(shown), "seconds": round(done - started, 1),
              "crashed": worker.process is None or worker.process.poll() is not None,
              "peak_rss_mib": _mib(worker.peak_rss_bytes())}
    echo(f"fan-out: {int(shown):,} of {hot_items:,} fact rows renamed after {result['seconds']}s, "
         f"peak RSS {result['peak_rss_mib']} MiB")
    return result
