"""What the pipeline is compared with, measured in the same run on the same topics:

* **raw copy**: aiokafka reads every record, orjson parses it, clickhouse-driver inserts columns
  of 10,000 rows - a copy with no join, no state and no Faust;
* **bare agent**: a Faust agent that only counts the records (``cdcapp.runtime.bare_agent``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from cdcapp.clickhouse.client import DriverTarget, open_target
from cdcapp.kafka_admin import end_offsets

RAW_TABLE = "raw_copy"
RAW_COLUMNS = ["topic", "partition", "offset", "op", "ts_ms", "key", "row"]
BATCH = 10_000


def raw_copy(bootstrap: str, topics: list[str], clickhouse_url: str, database: str) -> dict[str, Any]:
    target = open_target(clickhouse_url, database)
    if not isinstance(target, DriverTarget):
        raise ValueError("the raw copy needs a ClickHouse server (clickhouse://...)")
    try:
        target.execute(f"CREATE DATABASE IF NOT EXISTS {target.database}")
        target.execute(f"DROP TABLE IF EXISTS {target.database}.{RAW_TABLE}")
        target.execute(
            f"CREATE TABLE {target.database}.{RAW_TABLE} (topic String, partition UInt16, offset UInt64, "
            "op String, ts_ms UInt64, key String, row String) ENGINE = MergeTree ORDER BY (topic, partition, offset)")
        messages, seconds = asyncio.run(_copy(bootstrap, topics, target))
    finally:
        target.close()
    return {"messages": messages, "seconds": round(seconds, 3), "rate": round(messages / seconds, 1)}


async def _copy(bootstrap: str, topics: list[str], target: DriverTarget) -> tuple[int, float]:
    from aiokafka import TopicPartition

    ends = await end_offsets(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=BATCH,
                                fetch_max_bytes=50 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t, p in ends]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        remaining = sum(ends.values())
        columns: list[list[Any]] = [[] for _ in RAW_COLUMNS]
        copied = 0
        while remaining > 0:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            for tp, records in fetched.items():
                for record in records:
                    remaining -= 1
                    if record.value is None:
                        continue
                    event = orjson.loads(record.value)
                    payload = event.get("payload", event) if "payload" in event else event
                    image = payload.get("after") or payload.get("before")
                    for column, value in zip(columns, (
                            tp.topic, tp.partition, record.offset, payload.get("op", ""),
                            payload.get("source", {}).get("ts_ms", 0), (record.key or b"").decode(),
                            orjson.dumps(image).decode())):
                        column.append(value)
                    copied += 1
            if len(columns[0]) >= BATCH or (remaining <= 0 and columns[0]):
                target.insert_columns(RAW_TABLE, RAW_COLUMNS, columns)
                columns = [[] for _ in RAW_COLUMNS]
        return copied, time.perf_counter() - started
    finally:
        await consumer.stop()


def bare_agent(bootstrap: str, topics: list[str], expect: int, app_id: str, timeout_s: float = 600.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bare.json"
        env = {**os.environ, "BARE_TOPICS": ",".join(topics), "BARE_EXPECT": str(expect),
               "BARE_APP_ID": app_id, "BARE_BOOTSTRAP": bootstrap, "BARE_OUT": str(out)}
        result = subprocess.run([sys.executable, "-m", "cdcapp.runtime.bare_agent"], env=env, capture_output=True,
                                timeout=timeout_s, text=True)
        if not out.exists():
            raise RuntimeError(f"bare agent wrote no result (exit {result.returncode}): {result.stderr[-2000:]}")
        measured = orjson.loads(out.read_bytes())
    return {**measured, "rate": round(measured["messages"] / measured["seconds"], 1)}
