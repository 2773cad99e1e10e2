"""The project's own Prometheus metrics, on the registry Faust's sensors export at /metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

EVENTS = Counter(
    "cdcapp_events_total", "Stage messages processed, by entity, message type and outcome.",
    ["entity", "type", "outcome"], registry=REGISTRY,
)
SOURCE_EVENTS = Counter(
    "cdcapp_source_events_total", "Change events read from the source topics.", ["table", "op"], registry=REGISTRY,
)
STALE_CHANGES = Counter(
    "cdcapp_stale_changes_total",
    "Source changes dropped as older than their row's state, by source, entity and reason: 'older' (behind the "
    "row's last change, as on a replay) or 'rewound' (below half the row's position, as when a source's positions "
    "restart; each one is also logged as a warning).",
    ["source", "entity", "reason"], registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "cdcapp_dead_letters_total", "Events sent to the dead-letter topic, by stage and reason (the error's type).",
    ["stage", "reason"], registry=REGISTRY,
)
SINK_ROWS = Counter("cdcapp_sink_rows_total", "Rows inserted into ClickHouse.", ["table"], registry=REGISTRY)
SINK_ROWS_COALESCED = Counter(
    "cdcapp_sink_rows_coalesced_total", "Sink rows replaced in the buffer by a newer row of their key before insert.",
    registry=REGISTRY,
)
SINK_FLUSH_SECONDS = Histogram(
    "cdcapp_sink_flush_seconds", "Time to insert one flush into ClickHouse.", registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_LAST_FLUSH = Gauge(
    "cdcapp_sink_last_flush_timestamp_seconds", "When the last flush's insert into ClickHouse returned (Unix time).",
    registry=REGISTRY,
)
SINK_FLUSH_ROWS = Histogram(
    "cdcapp_sink_flush_rows", "Rows inserted by one flush (all tables).", registry=REGISTRY,
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
)
SINK_ERRORS = Counter("cdcapp_sink_errors_total", "Failed ClickHouse inserts (retried).", registry=REGISTRY)
SINK_BUFFERED = Gauge("cdcapp_sink_buffered_rows", "Rows waiting in the sink buffer.", registry=REGISTRY)
END_TO_END_LAG = Histogram(
    "cdcapp_end_to_end_lag_seconds",
    "From the source commit (source.ts_ms) to the row being in ClickHouse, by ClickHouse table.", ["table"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300, 600),
)
CONSUMER_LAG = Gauge(
    "cdcapp_consumer_lag_messages",
    "Records of a partition this worker owns that it has not read yet (the partition's end offset minus its "
    "position), by topic and partition; checked every second.", ["topic", "partition"], registry=REGISTRY,
)
PENDING_JOINS = Gauge(
    "cdcapp_pending_joins",
    "Rows waiting for a missing join side (a parent not arrived yet, deleted, or waiting itself), by entity, "
    "in the partitions this worker owns.", ["entity"], registry=REGISTRY,
)
PENDING_JOIN_OLDEST = Gauge(
    "cdcapp_pending_join_oldest_seconds",
    "How long the longest-waiting of those rows has waited (at least: rows found when the worker took their "
    "partition over count from then), by entity.", ["entity"], registry=REGISTRY,
)
SNAPSHOT_PROGRESS = Gauge(
    "cdcapp_snapshot_progress_ratio",
    "How far the newest snapshot of each Debezium connector is, 0 to 1 (its initial one, a backfill, tables "
    "added to it), from the connector's notifications.", ["connector"], registry=REGISTRY,
)
SNAPSHOT_RUNNING = Gauge(
    "cdcapp_snapshot_running", "1 while a connector's snapshot runs.", ["connector"], registry=REGISTRY,
)
STALE_DELIVERIES = Counter(
    "cdcapp_rebalance_stale_deliveries_total",
    "Deliveries a rebalance overtook: withheld and re-read (seeked_again), or acked without commit credit "
    "(ack_without_credit); see cdcapp.runtime.faust.",
    ["action"], registry=REGISTRY,
)
BATCH_EVENTS = Histogram(
    "cdcapp_batch_events", "Events per batch an agent handles (records of its topic), by agent.", ["agent"],
    registry=REGISTRY, buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
BATCH_SECONDS = Histogram(
    "cdcapp_batch_seconds", "Time the stage agent takes to handle one batch once gathered, until its "
    "outputs are handed to the producer (the event loop serves nothing else meanwhile).", registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOCAL_MESSAGES = Counter(
    "cdcapp_stage_local_messages_total",
    "Messages between stages (an info counted once per child) applied in the batch that made them, because this "
    "worker holds the receiving partition, instead of sent through the stage topic.", registry=REGISTRY,
)
SCHEMA_CHANGES = Counter(
    "cdcapp_schema_changes_total",
    "Schema sync's changes to ClickHouse tables, by table and change: 'added' (a column the source gained), "
    "'widened' (MODIFY COLUMN to a type that holds every old value), 'refused' (a source column name no ClickHouse "
    "column can have: left out, logged as an error).",
    ["table", "change"], registry=REGISTRY,
)
SCHEMA_MISSING = Counter(
    "cdcapp_schema_missing_column_rows_total",
    "Created or updated rows without a column the spec declares (dropped or renamed at the source), by entity and "
    "column: the column gets its type's default.",
    ["entity", "column"], registry=REGISTRY,
)
