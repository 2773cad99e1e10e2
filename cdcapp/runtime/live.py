"""What the worker's status page shows, gathered without burdening anything it watches.

Every 2 s the worker samples its own metrics (rows stored and the lag histogram per table,
consumer lag, dead letters) into a five-minute ring, from which the page draws its charts. While
someone has the page open (a request in the last 30 s), the connectors are checked every 5 s on
a thread (``cdcapp.stack.connectors``: state and stall), and ClickHouse's row counts come from
``system.parts`` every 10 s: metadata, no table scan.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Metric

from cdcapp.clickhouse.client import ClickHouse, rows_per_table
from cdcapp.config import Settings
from cdcapp.debezium.notifications import Snapshot
from cdcapp.runtime.metrics import (CONSUMER_LAG, DEAD_LETTERS, END_TO_END_LAG, PENDING_JOIN_OLDEST, PENDING_JOINS,
                                    SINK_ROWS)

SAMPLE_EVERY_S = 2.0
KEPT = 150  # samples: five minutes
QUANTILE = 0.99
WATCHED_FOR_S = 30.0


def _samples(metric: Any) -> list[Any]:
    families: list[Metric] = list(metric.collect())
    return [s for family in families for s in family.samples]


@dataclass
class Sample:
    at: float
    rows: dict[str, float]  # table -> rows stored since start
    buckets: dict[str, list[tuple[float, float]]]  # table -> (le, cumulative count)


def take_sample(now: float) -> Sample:
    rows = {s.labels["table"]: s.value for s in _samples(SINK_ROWS) if s.name.endswith("_total")}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for s in _samples(END_TO_END_LAG):
        if s.name.endswith("_bucket"):
            buckets.setdefault(s.labels["table"], []).append((float(s.labels["le"]), s.value))
    return Sample(now, rows, buckets)


def quantile(q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of the observations between two samples of a histogram, as the upper
    bound of the bucket it falls in (Prometheus's histogram_quantile interpolates; a page needs less)."""
    counts = dict(before)
    deltas = [(le, count - counts.get(le, 0.0)) for le, count in sorted(after)]
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return None
    for le, cumulative in deltas:
        if cumulative >= q * total:
            return le
    return None


def series(samples: list[Sample]) -> dict[str, dict[str, list]]:
    """Per table: [time, rows/s] and [time, p99 lag s] for each interval between samples."""
    out: dict[str, dict[str, list]] = {}
    for before, after in zip(samples, samples[1:]):
        span = after.at - before.at
        for table in after.rows.keys() | after.buckets.keys():
            line = out.setdefault(table, {"rows_per_s": [], "lag_p99_s": []})
            line["rows_per_s"].append([after.at, (after.rows.get(table, 0) - before.rows.get(table, 0)) / span])
            line["lag_p99_s"].append([after.at, quantile(QUANTILE, before.buckets.get(table, []),
                                                         after.buckets.get(table, []))])
    return out


@dataclass
class Live:
    settings: Settings
    clickhouse: ClickHouse
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=KEPT))
    connectors: list[dict[str, Any]] = field(default_factory=list)
    stored_rows: dict[str, int] = field(default_factory=dict)
    checked_at: dict[str, float] = field(default_factory=dict)
    viewed_at: float = float("-inf")
    #: connector (logical name) -> its newest snapshot (``cdcapp.runtime.snapshots``)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)

    def viewed(self) -> None:
        self.viewed_at = time.monotonic()

    @property
    def watched(self) -> bool:
        return time.monotonic() - self.viewed_at < WATCHED_FOR_S

    def sample(self) -> None:
        self.samples.append(take_sample(time.time()))

    async def refresh(self) -> None:
        """The slower checks, each at its own pace."""
        now = time.monotonic()
        if now - self.checked_at.get("connectors", 0) >= 5:
            self.checked_at["connectors"] = now
            self.connectors = await asyncio.to_thread(check_connectors, self.settings)
        if now - self.checked_at.get("clickhouse", 0) >= 10:
            self.checked_at["clickhouse"] = now
            try:
                self.stored_rows = await self.clickhouse.run(rows_per_table)
            except Exception:  # noqa: BLE001 - shown as unknown; the sink reports the error itself
                self.stored_rows = {}

    def view(self) -> dict[str, Any]:
        by_topic: dict[str, float] = {}
        for s in _samples(CONSUMER_LAG):
            by_topic[s.labels["topic"]] = by_topic.get(s.labels["topic"], 0) + s.value
        letters: dict[str, float] = {}
        for s in _samples(DEAD_LETTERS):
            if s.name.endswith("_total"):
                letters[s.labels["stage"]] = letters.get(s.labels["stage"], 0) + s.value
        oldest = {s.labels["entity"]: s.value for s in _samples(PENDING_JOIN_OLDEST)}
        pending = {s.labels["entity"]: {"rows": s.value, "oldest_s": oldest.get(s.labels["entity"], 0.0)}
                   for s in _samples(PENDING_JOINS)}
        connectors = [{**c, "snapshot": self.snapshots[c["logical"]].view()} if c.get("logical") in self.snapshots
                      else c for c in self.connectors]
        return {"connectors": connectors, "series": series(list(self.samples)), "stored_rows": self.stored_rows,
                "consumer_lag": by_topic, "dead_letters": letters, "pending_joins": pending}


def check_connectors(settings: Settings) -> list[dict[str, Any]]:
    from cdcapp.stack.base import ProbeFailed
    from cdcapp.stack.connectors import deployed_states

    try:
        states = deployed_states(settings)
    except ProbeFailed as exc:
        return [{"name": "kafka connect", "ok": None, "detail": f"not reachable from this worker: {exc}"}]
    return [{"name": name, "logical": logical, "ok": why is None,
             "detail": "RUNNING, capturing" if why is None else why.splitlines()[0]} for name, logical, why in states]
