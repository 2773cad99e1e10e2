"""The Debezium connectors, deployed through the Connect REST API from ``debezium/*-connector.json``."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from cdcapp.config import Settings
from cdcapp.stack.base import DEBEZIUM_DIR, HOST, Echo, ProbeFailed, Service, StackError, read_end, render
from cdcapp.stack.connect import rest

log = logging.getLogger(__name__)

SOURCES = ("postgres", "mariadb")

#: a task that failed to take its replication slot this recently, while an older walsender still
#: holds it, is stalled
STALL_WINDOW = timedelta(minutes=2)
#: how much of Connect's log the stall check reads (its stack traces are long)
LOG_TAIL_BYTES = 1 << 20
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]")


class Stalled(ProbeFailed):
    """Connect reports the connector RUNNING, but it captures nothing."""

    def __init__(self, why: str, orphan_pid: int | None = None) -> None:
        super().__init__(f"stalled: {why}")
        self.orphan_pid = orphan_pid


def slot_refusals(log_text: str, slot: str, since: datetime) -> list[int]:
    """PIDs named, after ``since``, by Debezium's 'replication slot "<slot>" is active for PID n'
    (the task retrying to take a slot that another walsender holds), oldest first."""
    held = re.compile(rf'replication slot "{re.escape(slot)}" is active for PID (\d+)')
    stamp: datetime | None = None
    pids = []
    for line in log_text.splitlines():
        logged = _LOG_TIME.match(line)
        if logged:
            stamp = datetime.strptime(logged.group(1), "%Y-%m-%d %H:%M:%S")
            continue
        refused = held.search(line)
        if refused and stamp is not None and stamp >= since:
            pids.append(int(refused.group(1)))
    return pids



@dataclass(frozen=True)
class Endpoints:
    """Where Connect reaches things: 127.0.0.1 natively, service names under docker-compose."""

    connect_url: str
    pg_host: str = HOST
    mariadb_host: str = HOST
    kafka_bootstrap: str | None = None

    @classmethod
    def native(cls, settings: Settings) -> Endpoints:
        return cls(connect_url=f"http://{HOST}:{settings.connect_port}")


def connector_spec(source: str, settings: Settings, endpoints: Endpoints) -> dict[str, Any]:
    """``{"name": ..., "config": {...}}`` of one source with its placeholders filled."""
    s = settings
    values = {
        "PG_HOST": endpoints.pg_host, "PG_PORT": s.pg_port, "PG_USER": s.pg_user,
        "PG_PASSWORD": s.pg_password, "PG_DB": s.pg_db,
        "MARIADB_HOST": endpoints.mariadb_host, "MARIADB_PORT": s.mariadb_port,
        "MARIADB_USER": s.mariadb_user, "MARIADB_PASSWORD": s.mariadb_password, "MARIADB_DB": s.mariadb_db,
        "KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap or f"{HOST}:{s.kafka_port}",
        "SOURCE_TOPIC_PREFIX": s.source_topic_prefix,
    }
    spec = json.loads((DEBEZIUM_DIR / f"{source}-connector.json").read_text())
    # Filled value by value, so that a password with quotes cannot break the JSON.
    spec["config"] = {k: render(v, values) for k, v in spec["config"].items()}
    return spec


class Connector(Service):
    """Not a process: up means deployed with connector and every task RUNNING."""

    start_timeout = 120.0

    def __init__(self, settings: Settings, source: str, endpoints: Endpoints | None = None) -> None:
        super().__init__(settings)
        self.source = source
        self.name = f"connector-{source}"
        self.endpoints = endpoints or Endpoints.native(settings)
        self.spec = connector_spec(source, settings, self.endpoints)

    @property
    def connector_url(self) -> str:
        return f"{self.endpoints.connect_url}/connectors/{self.spec['name']}"

    @property
    def address(self) -> str:
        return self.connector_url

    @property
    def log_path(self):
        return self.state / "logs" / "connect.log"

    def deploy(self, echo: Echo) -> None:
        """PUT the config unless Connect already has exactly it: an equal PUT would restart the tasks."""
        try:
            current = rest(self.connector_url + "/config")
        except ProbeFailed:
            current = None
        wanted = self.spec["config"]
        if current is not None and {k: v for k, v in current.items() if k != "name"} == wanted:
            return
        echo(f"{self.name}: {'updating' if current else 'creating'} {self.spec['name']}")
        rest(self.connector_url + "/config", method="PUT", body=wanted, timeout=60)

    def ensure_up(self, echo: Echo) -> None:
        """Deploy, then wait until running; a failed or stalled connector is healed once."""
        try:
            self.deploy(echo)
        except ProbeFailed as e:
            raise StackError(f"{self.name}: deploy failed: {e}; see {self.log_path}") from e
        deadline = time.monotonic() + self.start_timeout
        healed = False
        while True:
            try:
                self.probe()
                return
            except Stalled as stalled:
                if not healed:
                    healed = True
                    self.heal(echo, stalled)
                    continue
                why = str(stalled)
            except ProbeFailed as failed:
                why = str(failed)
                if "FAILED" in why:
                    if healed:
                        raise StackError(f"{self.name} not running ({why}); see {self.log_path}") from None
                    healed = True
                    self.heal(echo, None)
                    continue
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} not running ({why}); see {self.log_path}")
            time.sleep(0.5)

    def probe(self) -> None:
        status = rest(self.connector_url + "/status", timeout=5)
        parts = [status["connector"], *status["tasks"]]
        states = [p["state"] for p in parts]
        if any(s != "RUNNING" for s in states):
            traces = "\n".join("\n".join(p.get("trace", "").splitlines()[:3]) for p in parts if p["state"] == "FAILED")
            raise ProbeFailed(f"connector and task states {states}\n{traces}".strip())
        if not status["tasks"]:
            raise ProbeFailed("connector RUNNING, no task yet")
        if self.source == "postgres":
            self._check_slot()

    def _pg(self) -> psycopg.Connection:
        s = self.settings
        return psycopg.connect(host=s.pg_host, port=s.pg_port, user=s.pg_user, password=s.pg_password,
                               dbname=s.pg_db, connect_timeout=3, autocommit=True)

    def _check_slot(self) -> None:
        """Raise ``Stalled`` when the task keeps failing to take its replication slot because an
        older walsender holds it.

        After a broker restart Connect can start a new task while the old one's replication
        connection lives on: the new task retries for ever, Connect keeps saying RUNNING, and
        nothing is captured (docs/operations.md). The log names the holder; PostgreSQL confirms
        that it still holds the slot.
        """
        slot = self.spec["config"]["slot.name"]
        refusals = slot_refusals(read_end(self.log_path, LOG_TAIL_BYTES) or "", slot, datetime.now() - STALL_WINDOW)
        if not refusals:
            return
        try:
            with self._pg() as conn:
                row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                                   (slot,)).fetchone()
        except psycopg.Error as exc:
            log.warning("stall check of %s skipped: %s", self.name, exc)
            return
        holder = row[0] if row else None
        if holder is not None and holder in refusals:
            raise Stalled(f"replication slot {slot} is held by walsender PID {holder}, which the task keeps "
                          f"failing to take over ({len(refusals)} refusals logged in the last "
                          f"{STALL_WINDOW.seconds // 60} min); `cdcapp stack up` ends it and restarts the task",
                          orphan_pid=holder)

    def heal(self, echo: Echo, stalled: Stalled | None) -> None:
        """End the walsender that holds the slot (if any), then restart the connector and its tasks."""
        if stalled is not None and stalled.orphan_pid is not None:
            echo(f"{self.name}: ending walsender PID {stalled.orphan_pid}, which holds the replication slot")
            with self._pg() as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (stalled.orphan_pid,))
        echo(f"{self.name}: restarting the connector and its tasks")
        rest(self.connector_url + "/restart?includeTasks=true&onlyFailed=false", method="POST", timeout=60)

    def stop(self) -> bool:
        # The config stays in Connect's topics; stopping Connect stops the connector.
        return False


def deployed_states(settings: Settings) -> list[tuple[str, str | None]]:
    """(name, None when capturing else why not) of each cdcapp connector deployed in Connect;
    ``ProbeFailed`` when Connect does not answer."""
    connectors = [Connector(settings, source) for source in SOURCES]
    deployed = set(rest(f"{connectors[0].endpoints.connect_url}/connectors", timeout=5))
    return [(c.spec["name"], c.check()) for c in connectors if c.spec["name"] in deployed]
