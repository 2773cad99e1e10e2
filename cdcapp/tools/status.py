"""``cdcapp status``: every stage of the pipeline on one screen, and an exit code for scripts.

Capture (each Debezium connector deployed in Connect: connector and task state, and the stall
check of ``cdcapp.stack.connectors``), Kafka (source topic end offsets, the consumer group's lag),
the workers (found in the consumer group, where Faust's assignor publishes each one's web URL; each
asked for its /status/), ClickHouse (rows and newest ``_version`` per table, from ``system.parts``
and one ``max``) and the dead letters. A check that fails makes the status unhealthy; dead letters
do not (nothing was lost), they are shown for the operator to act on.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from cdcapp.clickhouse import generation
from cdcapp.clickhouse.client import ClickHouseUrl, Target, is_server, open_target, pipeline_database, rows_per_table
from cdcapp.clickhouse.ddl import quote, table_shapes
from cdcapp.config import Settings
from cdcapp.kafka_admin import dlq_topic, end_offsets
from cdcapp.model.spec import Spec
from cdcapp.stack.base import ProbeFailed
from cdcapp.stack.connectors import deployed_states
from cdcapp.tools.epochs import source_topics


@dataclass
class Check:
    area: str
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Status:
    app_id: str
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> bytes:
        return orjson.dumps({"app_id": self.app_id, "healthy": self.healthy, "checks": [asdict(c) for c in self.checks]},
                            option=orjson.OPT_INDENT_2)


def connectors(settings: Settings) -> list[Check]:
    try:
        states = deployed_states(settings)
    except ProbeFailed as exc:
        return [Check("capture", "kafka connect", False, f"unreachable: {exc}")]
    checks = [Check("capture", name, why is None, why or "RUNNING, capturing") for name, _, why in states]
    return checks or [Check("capture", "kafka connect", True, "no Debezium connector deployed (SQLite relays are "
                                                                "not seen from here)")]


async def _kafka(settings: Settings, spec: Spec, app_id: str, prefix: str) -> tuple[list[Check], list[str]]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

    topics = source_topics(settings, spec)
    ends = await end_offsets(settings.kafka_bootstrap, topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        committed = {(tp.topic, tp.partition): meta.offset
                     for tp, meta in (await admin.list_consumer_group_offsets(app_id)).items()}
        described = await admin.describe_consumer_groups([app_id])
    finally:
        await admin.close()
    checks = []
    for topic in topics:
        parts = {p: end for (t, p), end in ends.items() if t == topic}
        lag = sum(max(0, end - max(0, committed.get((topic, p), 0))) for p, end in parts.items())
        checks.append(Check("kafka", topic, True, f"{sum(parts.values()):,} records, group lag {lag:,}",
                            {"end_offsets": {str(p): e for p, e in sorted(parts.items())}, "lag": lag}))
    urls = []
    for response in described:
        for group in response.to_object()["groups"]:
            for member in group["members"]:
                user_data = ConsumerProtocolMemberMetadata.decode(member["member_metadata"]).user_data
                try:
                    urls.append(str(orjson.loads(user_data)["url"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    urls.append(f"(a member without a web URL: {member['client_id']})")
    dlq = await end_offsets(settings.kafka_bootstrap, [dlq_topic(prefix)])
    letters = sum(dlq.values())
    checks.append(Check("dead letters", dlq_topic(prefix), True,
                        f"{letters:,} letters" + (": cdcapp dlq list" if letters else ""), {"letters": letters}))
    return checks, urls


def workers(app_id: str, urls: list[str]) -> list[Check]:
    if not urls:
        return [Check("workers", app_id, False, "no worker in the consumer group: nothing is processed")]
    checks = []
    for url in sorted(urls):
        try:
            with urllib.request.urlopen(f"{url}/status/", timeout=3) as response:
                body = orjson.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            checks.append(Check("workers", url, False, f"no answer from /status/: {exc}"))
            continue
        sink = body.get("sink") or {}
        error = sink.get("last_error")
        checks.append(Check("workers", url, error is None,
                            f"{len(body.get('assigned_partitions') or [])} partitions, "
                            f"{sink.get('buffered_rows', 0):,} rows buffered, last flush "
                            f"{sink.get('last_flush_age_s')} s ago" + (f", sink error: {error}" if error else ""),
                            body))
    return checks


def _stored(target: Target, spec: Spec) -> list[Check]:
    db = target.database
    rows = rows_per_table(target)
    checks = []
    for table in table_shapes(spec):
        newest = target.query(f"SELECT max(_version) FROM {quote(db)}.{quote(table)}") if table in rows else [[0]]
        checks.append(Check("clickhouse", f"{db}.{table}", True,
                            f"{rows.get(table, 0):,} rows stored, newest _version {newest[0][0]}",
                            {"rows": rows.get(table, 0), "newest_version": int(newest[0][0] or 0)}))
    return checks


def clickhouse(settings: Settings, spec: Spec) -> tuple[list[Check], generation.Generation | None]:
    url = settings.resolved_clickhouse_url
    try:
        target = open_target(url, pipeline_database(settings, spec))
        try:
            return _stored(target, spec), generation.current(target) if is_server(url) else None
        finally:
            target.close()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the finding
        return [Check("clickhouse", ClickHouseUrl.parse(url).redacted(), False, f"unreachable: {exc}")], None


def gather(settings: Settings, spec: Spec) -> Status:
    stored, current = clickhouse(settings, spec)
    live = generation.applied(settings, spec, current)
    checks = connectors(settings)
    try:
        kafka, urls = asyncio.run(_kafka(settings, spec, live.app_id, live.internal_topic_prefix))
        checks += kafka + workers(live.app_id, urls)
    except Exception as exc:  # noqa: BLE001 - Kafka down: the workers cannot be found either
        checks.append(Check("kafka", settings.kafka_bootstrap, False, f"unreachable: {exc}"))
    return Status(live.app_id, checks + stored)
