"""A benchmark source: a PostgreSQL database of its own, captured by a Debezium connector of its
own into topics of its own (``<prefix>.<table>``), so that a run measures exactly its changes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from cdcapp.config import Settings
from cdcapp.clickhouse.client import open_target
from cdcapp.kafka_admin import delete_topics, end_offsets, source_topic
from cdcapp.model.spec import Spec, load_spec
from cdcapp.sources.capture import captured
from cdcapp.sources.connections import connect, create_oltp_schema
from cdcapp.stack.base import ProbeFailed
from cdcapp.stack.connect import rest
from cdcapp.stack.connectors import Endpoints, capture_config, connector_spec


@dataclass
class BenchSource:
    base: Settings
    #: the database, the Debezium ``topic.prefix`` (``_source`` in ClickHouse) and the connector's name
    name: str
    #: the routed topics' prefix; a new one per run, so that every run starts from empty topics
    topic_prefix: str

    @property
    def settings(self) -> Settings:
        return self.base.model_copy(update={"pg_db": self.name, "source_topic_prefix": self.topic_prefix})

    @property
    def connector(self) -> str:
        # Connect keeps a connector's source offsets after it is deleted: a new run needs a new name.
        return f"cdcapp-{self.name}-{self.topic_prefix}"

    @property
    def slot(self) -> str:
        return f"{self.topic_prefix}_slot"

    @property
    def connect_url(self) -> str:
        return Endpoints.native(self.base).connect_url

    @property
    def connector_url(self) -> str:
        return f"{self.connect_url}/connectors/{self.connector}"

    def topics(self, spec: Spec) -> list[str]:
        return [source_topic(self.topic_prefix, entity) for entity in spec.entities]

    def _admin(self) -> psycopg.Connection:
        s = self.base
        return psycopg.connect(host=s.pg_host, port=s.pg_port, user=s.pg_user, password=s.pg_password,
                               dbname="postgres", autocommit=True)

    def reset(self) -> None:
        """Remove what earlier runs left (connectors, replication slots, the database), then
        create the database empty."""
        for connector in rest(f"{self.connect_url}/connectors", timeout=10):
            if connector.startswith(f"cdcapp-{self.name}-"):
                rest(f"{self.connect_url}/connectors/{connector}", method="DELETE", timeout=60)
        time.sleep(2)  # Connect stops tasks asynchronously; their walsenders must be gone first
        with self._admin() as conn:
            slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s",
                                 (self.name,)).fetchall()
            for (slot,) in slots:
                conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                             "WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        oltp = connect("postgres", self.settings)
        try:
            create_oltp_schema("postgres", oltp)
        finally:
            oltp.close()

    def deploy_connector(self) -> None:
        """Capture the database: snapshot what is there, then stream, until removed."""
        spec = connector_spec("postgres", self.settings, Endpoints.native(self.base))
        config: dict[str, Any] = spec["config"]
        config.update({
            "name": self.connector, "topic.prefix": self.name, "slot.name": self.slot,
            "publication.name": f"{self.topic_prefix}_publication",
            **capture_config("postgres", self.settings, self.name, captured(load_spec(), "postgres", self.settings)),
        })
        rest(self.connector_url + "/config", method="PUT", body=config, timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status = rest(self.connector_url + "/status", timeout=5)
            except ProbeFailed:
                status = None
            if status and status["tasks"] and all(t["state"] == "RUNNING" for t in status["tasks"]):
                return
            if status and any(t["state"] == "FAILED" for t in status["tasks"]):
                raise RuntimeError(f"{self.connector} failed: {status['tasks'][0].get('trace', '')[:500]}")
            time.sleep(0.5)
        raise TimeoutError(f"{self.connector} not running after 120 s")

    def cleanup(self, clickhouse_databases: list[str]) -> None:
        """Remove what a run leaves: the connector and its replication slot (which would retain
        WAL), the run's topics (source, internal, changelogs: all named after the run) and its
        ClickHouse databases. The source database stays until the next run resets it."""
        self.remove_connector()
        with self._admin() as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND active_pid IS NULL", (self.slot,))
        asyncio.run(delete_topics(self.base.kafka_bootstrap, self.topic_prefix))
        target = open_target(f"clickhouse://default@127.0.0.1:{self.base.clickhouse_port}", "default")
        try:
            for database in clickhouse_databases:
                target.execute(f"DROP DATABASE IF EXISTS {database}")
        finally:
            target.close()

    def remove_connector(self) -> None:
        try:
            rest(self.connector_url, method="DELETE", timeout=60)
        except ProbeFailed as exc:
            if "404" not in str(exc):
                raise
            return
        # Connect stops the task asynchronously; its walsender must be gone before the slot is dropped.
        time.sleep(2)

    def published(self, spec: Spec) -> int:
        ends = asyncio.run(end_offsets(self.base.kafka_bootstrap, self.topics(spec)))
        return sum(ends.values())

    def wait_published(self, spec: Spec, at_least: int, quiet_s: float = 3.0, timeout_s: float = 900.0) -> int:
        """Until the topics hold at least ``at_least`` records and stop growing for ``quiet_s``."""
        deadline = time.monotonic() + timeout_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = self.published(spec)
            if count != last:
                last, since = count, time.monotonic()
            elif count >= at_least and time.monotonic() - since >= quiet_s:
                return count
            time.sleep(0.5)
        raise TimeoutError(f"Debezium published {last} records of {self.name}, expected at least {at_least}")
