"""Debezium really emits create/update/delete events and the tombstone, for both sources.

Each test changes one fresh customer row and reads ``oltp.customers`` from the end offsets taken
just before the change, so reruns against the same stack only see their own events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
import pymysql
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cdcapp.config import Settings

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

EVENT_TIMEOUT_S = 90


def bootstrap(settings: Settings) -> str:
    return f"127.0.0.1:{settings.kafka_port}"


@asynccontextmanager
async def consumer_at_end(settings: Settings, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer of every partition of ``topic``, positioned at its current end."""
    # On a fresh stack the connector has not created the topic yet (empty tables snapshot
    # nothing); create it as the connector would.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(settings))
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, num_partitions=settings.partitions, replication_factor=1)])
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    assert partitions, f"{topic} has no partitions"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolves the end offset now, before the change
        yield consumer
    finally:
        await consumer.stop()


async def events_for_key(
    consumer: AIOKafkaConsumer, source: str, row_id: int, count: int
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The first ``count`` (key, value) pairs whose key is ``row_id`` of table customers in ``source``."""
    found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    deadline = asyncio.get_running_loop().time() + EVENT_TIMEOUT_S
    while len(found) < count and asyncio.get_running_loop().time() < deadline:
        batches = await consumer.getmany(timeout_ms=1000)
        for records in batches.values():
            for record in records:
                key = json.loads(record.key) if record.key else None
                if not isinstance(key, dict) or not isinstance(key.get("schema"), dict):
                    continue  # not a Debezium key: another producer shares the topic
                # The key schema is named after the topic before routing: <prefix>.<schema>.<table>.Key.
                if key["schema"].get("name", "").startswith(f"{source}.") and key["payload"].get("id") == row_id:
                    found.append((key, None if record.value is None else json.loads(record.value)))
    return found[:count]


def assert_change_events(events: list, source: str, row_id: int, email: str) -> None:
    assert len(events) == 4, f"expected c, u, d and a tombstone; got {[e[1] and e[1]['op'] for e in events]}"
    values = [value for _, value in events]
    assert [v["op"] for v in values[:3]] == ["c", "u", "d"]
    assert values[3] is None, "delete must be followed by a tombstone"
    for v in values[:3]:
        assert v["source"]["name"] == source
        # value.converter.schemas.enable=false: the envelope is the bare payload, no schema.
        assert "schema" not in v and "payload" not in v
    created, updated, deleted = values[:3]
    assert created["after"]["id"] == row_id and created["after"]["email"] == email
    assert updated["after"]["city"] == "Updated City"
    assert deleted["after"] is None and deleted["before"]["id"] == row_id


async def test_postgres_change_events(stack: Settings) -> None:
    s = stack
    topic = f"{s.source_topic_prefix}.customers"
    email = f"pg-{uuid.uuid4().hex}@example.test"
    async with consumer_at_end(s, topic) as consumer:
        with psycopg.connect(
            host="127.0.0.1", port=s.pg_port, user=s.pg_user, password=s.pg_password, dbname=s.pg_db,
            autocommit=True,
        ) as conn:
            (row_id,) = conn.execute(
                "INSERT INTO customers (email, name, country, city, created_at) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (email, "Test Customer", "DE", "Berlin", datetime(2024, 1, 2, 3, 4, 5)),
            ).fetchone()
            conn.execute("UPDATE customers SET city = 'Updated City' WHERE id = %s", (row_id,))
            conn.execute("DELETE FROM customers WHERE id = %s", (row_id,))
        events = await events_for_key(consumer, "postgres", row_id, 4)
    assert_change_events(events, "postgres", row_id, email)


async def test_mariadb_change_events(stack: Settings) -> None:
    s = stack
    topic = f"{s.source_topic_prefix}.customers"
    email = f"maria-{uuid.uuid4().hex}@example.test"
    async with consumer_at_end(s, topic) as consumer:
        conn = pymysql.connect(
            host="127.0.0.1", port=s.mariadb_port, user=s.mariadb_user, password=s.mariadb_password,
            database=s.mariadb_db, autocommit=True,
        )
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO customers (email, name, country, city, created_at) VALUES (%s, %s, %s, %s, %s)",
                (email, "Test Customer", "FR", "Paris", datetime(2024, 1, 2, 3, 4, 5)),
            )
            row_id = cur.lastrowid
            cur.execute("UPDATE customers SET city = 'Updated City' WHERE id = %s", (row_id,))
            cur.execute("DELETE FROM customers WHERE id = %s", (row_id,))
        events = await events_for_key(consumer, "mariadb", row_id, 4)
    assert_change_events(events, "mariadb", row_id, email)
    # binlog_row_image=FULL: the delete carries the whole row, unlike PostgreSQL's key-only image.
    assert events[2][1]["before"]["email"] == email
