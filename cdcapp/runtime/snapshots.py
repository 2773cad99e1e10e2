"""How far each connector's snapshot is, from its notification topic, for the metrics and the page.

Every worker reads the notification topics of the stack's connectors whole, without a consumer
group: they are small (a few records per snapshot chunk), and each worker's page and metrics then
tell the same. Topics that appear later (a connector deployed after the worker started) are
picked up within half a minute; the set changing means reading them all again.
"""

from __future__ import annotations

import logging
import time

import faust
import orjson

from cdcapp.debezium.notifications import Snapshot, follow
from cdcapp.kafka_admin import end_offsets, notifications_topic
from cdcapp.runtime.metrics import SNAPSHOT_PROGRESS, SNAPSHOT_RUNNING
from cdcapp.stack.connectors import SOURCES

log = logging.getLogger(__name__)

RECHECK_TOPICS_S = 30.0


def register(app: faust.App, bootstrap: str, snapshots: dict[str, Snapshot]) -> None:
    @app.task
    async def follow_snapshots() -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id=f"{app.conf.id}-snapshots")
        await consumer.start()
        try:
            assigned: set[TopicPartition] = set()
            checked = float("-inf")
            while True:
                if time.monotonic() - checked >= RECHECK_TOPICS_S:
                    checked = time.monotonic()
                    try:
                        ends = await end_offsets(bootstrap, [notifications_topic(source) for source in SOURCES])
                    except Exception as exc:  # noqa: BLE001 - the page shows less meanwhile; tried again later
                        log.warning("reading the connectors' notification topics failed: %s", exc)
                        ends = {(tp.topic, tp.partition): 0 for tp in assigned}
                    wanted = {TopicPartition(topic, partition) for topic, partition in ends}
                    if wanted != assigned:
                        assigned = wanted
                        snapshots.clear()
                        consumer.assign(sorted(assigned))
                        await consumer.seek_to_beginning(*assigned)
                if not assigned:
                    await app.sleep(RECHECK_TOPICS_S)
                    continue
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        try:
                            follow(snapshots, orjson.loads(record.value))
                        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
                            log.warning("notification %s[%d]@%d not understood (%s): skipped for the page and "
                                        "the metrics", record.topic, record.partition, record.offset, exc)
                export(snapshots)
        finally:
            await consumer.stop()


def export(snapshots: dict[str, Snapshot]) -> None:
    for connector, snapshot in snapshots.items():
        view = snapshot.view()
        SNAPSHOT_PROGRESS.labels(connector).set(view["fraction"])
        SNAPSHOT_RUNNING.labels(connector).set(1 if snapshot.state == "running" else 0)
