"""The Debezium connectors, deployed through the Connect REST API from ``debezium/*-connector.json``.

The files hold everything but what to capture. The tables, and the topic each table's changes go
to, come from the spec (``cdcapp.sources.capture``), merged with what the connector captures
already: deploying never drops a table on its own, so tables added by hand, or by another
pipeline's spec, stay; ``--prune`` drops the tables no spec names, and says which. Each table gets
an exact route to its topic; a table included by hand without a route goes to
``<source topic prefix>.<schema>.<table>``, so tables of different schemas never share a topic.
A table added to a running connector is snapshotted incrementally (``snapshot.mode=initial``
reads only the tables of the first start), while streaming goes on.
"""

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
from cdcapp.kafka_admin import source_topic
from cdcapp.model.spec import Spec, load_spec
from cdcapp.sources.capture import SIGNAL_TABLE, captured, signal_table
from cdcapp.stack.base import DEBEZIUM_DIR, HOST, Echo, ProbeFailed, Service, StackError, read_end, render
from cdcapp.stack.connect import rest

log = logging.getLogger(__name__)

SOURCES = ("postgres", "mariadb")
ROUTER = "org.apache.kafka.connect.transforms.RegexRouter"
#: how long deploying waits for the snapshot of the tables it added (then `cdcapp backfill` resumes it)
ADDED_SNAPSHOT_TIMEOUT_S = 3600.0

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


def capture_config(kind: str, settings: Settings, topic_prefix: str, tables: dict[str, str]) -> dict[str, str]:
    """The config keys that say what a connector captures (``tables``: ``schema.table`` -> topic)
    and where each table's events go: one exact route per table, then the fallback."""
    routed = {**tables, signal_table(kind, settings): source_topic(settings.source_topic_prefix, SIGNAL_TABLE)}
    names = sorted(routed)
    config = {"table.include.list": ",".join(names)}
    if kind == "mariadb":
        config["database.include.list"] = ",".join(sorted({name.partition(".")[0] for name in names}))
    routes = []
    for i, name in enumerate(names):
        routes.append(f"table{i}")
        config.update({f"transforms.table{i}.type": ROUTER, f"transforms.table{i}.regex": re.escape(f"{topic_prefix}.{name}"),
                       f"transforms.table{i}.replacement": routed[name]})
    routes.append("other")
    config.update({"transforms.other.type": ROUTER,
                   "transforms.other.regex": rf"{re.escape(topic_prefix)}\.([^.]+)\.([^.]+)",
                   "transforms.other.replacement": f"{settings.source_topic_prefix}.$1.$2",
                   "transforms": ",".join(routes)})
    return config


def routed_topic(config: dict[str, str], topic: str) -> str:
    """Where ``config``'s chain of RegexRouters sends a record of ``topic`` (Java's regex and
    replacement syntax, in the subset a topic name needs)."""
    for name in filter(None, (n.strip() for n in config.get("transforms", "").split(","))):
        if config.get(f"transforms.{name}.type") != ROUTER:
            continue
        match = re.fullmatch(config[f"transforms.{name}.regex"], topic)
        if match:
            topic = match.expand(re.sub(r"\$(\d+)", r"\\\1", config[f"transforms.{name}.replacement"]))
    return topic


def deployed_tables(kind: str, settings: Settings, config: dict[str, str]) -> dict[str, str]:
    """What a deployed config captures: ``schema.table`` -> the topic its events go to now."""
    entries = [e.strip() for e in config.get("table.include.list", "").split(",") if e.strip()]
    return {e: routed_topic(config, f"{config['topic.prefix']}.{e}") for e in entries
            if e != signal_table(kind, settings)}


@dataclass(frozen=True)
class CapturePlan:
    tables: dict[str, str]
    added: list[str]
    kept: list[str]  # captured, named by no spec, kept
    pruned: list[str]
    moved: list[tuple[str, str, str]]  # (table, topic before, topic now)

    def describe(self) -> list[str]:
        lines = [f"captures {t} -> {self.tables[t]} (new: snapshotted incrementally)" for t in self.added]
        lines += [f"routes {t} to {now} instead of {before}" for t, before, now in self.moved]
        lines += [f"stops capturing {t} (--prune: no spec names it)" for t in self.pruned]
        lines += [f"keeps capturing {t} -> {self.tables[t]} (no spec names it; --prune drops it)" for t in self.kept]
        return lines


def plan_capture(wanted: dict[str, str], deployed: dict[str, str], prune: bool) -> CapturePlan:
    """The spec's tables (``wanted``) merged into what the connector captures (``deployed``)."""
    others = sorted(set(deployed) - set(wanted))
    tables = {**({} if prune else {t: deployed[t] for t in others}), **wanted}
    return CapturePlan(
        tables=tables, added=sorted(set(wanted) - set(deployed)), kept=[] if prune else others,
        pruned=others if prune else [],
        moved=[(t, deployed[t], wanted[t]) for t in sorted(set(wanted) & set(deployed)) if deployed[t] != wanted[t]])


class Connector(Service):
    """Not a process: up means deployed with connector and every task RUNNING."""

    start_timeout = 120.0

    def __init__(self, settings: Settings, source: str, endpoints: Endpoints | None = None,
                 specs: list[Spec] | None = None, prune: bool = False) -> None:
        super().__init__(settings)
        self.source = source
        self.name = f"connector-{source}"
        self.endpoints = endpoints or Endpoints.native(settings)
        self.spec = connector_spec(source, settings, self.endpoints)
        #: the specs whose tables it captures (default: the settings' spec, read when deploying)
        self.specs = specs
        self.prune = prune
        #: tables the last deploy added to a running connector, to snapshot once it runs
        self.added: list[str] = []

    @property
    def connector_url(self) -> str:
        return f"{self.endpoints.connect_url}/connectors/{self.spec['name']}"

    @property
    def address(self) -> str:
        return self.connector_url

    @property
    def log_path(self):
        return self.state / "logs" / "connect.log"

    def wanted_tables(self) -> dict[str, str]:
        tables: dict[str, str] = {}
        for spec in self.specs if self.specs is not None else [load_spec(self.settings.spec_path)]:
            tables.update(captured(spec, self.source, self.settings))
        return tables

    def deploy(self, echo: Echo) -> None:
        """PUT the config unless Connect already has exactly it: an equal PUT would restart the tasks."""
        try:
            current = rest(self.connector_url + "/config")
        except ProbeFailed:
            current = None
        template = self.spec["config"]
        deployed = deployed_tables(self.source, self.settings, current) if current else {}
        plan = plan_capture(self.wanted_tables(), deployed, self.prune)
        wanted = {**template, **capture_config(self.source, self.settings, template["topic.prefix"], plan.tables)}
        if current is not None and {k: v for k, v in current.items() if k != "name"} == wanted:
            return
        echo(f"{self.name}: {'updating' if current else 'creating'} {self.spec['name']}")
        if current is not None:
            for line in plan.describe():
                echo(f"{self.name}: {line}")
        rest(self.connector_url + "/config", method="PUT", body=wanted, timeout=60)
        self.added = plan.added if current is not None else []

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
                if self.added:
                    self.snapshot_added(echo)
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

    def snapshot_added(self, echo: Echo) -> None:
        """Snapshot the tables the deploy added, once the tasks run with them (a signal that a task
        of the old config reads is skipped: then it is sent again)."""
        from cdcapp.stack.kafka import run_sync
        from cdcapp.tools.backfill import BackfillFailed, NotCaptured, Progress, backfill_debezium

        tables, self.added = self.added, []
        shown: list[int] = []

        def show(progress: Progress) -> None:
            done = int(progress.fraction * 10)
            if not shown or done > shown[-1]:
                shown.append(done)
                echo(f"{self.name}: snapshot of {', '.join(tables)}: {done * 10} %")

        deadline = time.monotonic() + self.start_timeout
        while True:
            configs = [t.get("config", {}) for t in rest(self.connector_url + "/tasks", timeout=10)]
            if configs and all(set(tables) <= set(c.get("table.include.list", "").split(",")) for c in configs):
                try:
                    progress = run_sync(backfill_debezium(self.settings, self.source, tables, show,
                                                          ADDED_SNAPSHOT_TIMEOUT_S))
                    break
                except NotCaptured:
                    pass
                except BackfillFailed as exc:
                    raise StackError(f"{self.name}: the snapshot of {', '.join(tables)} failed ({exc}); "
                                     f"`cdcapp backfill --source {self.source} --table ...` runs it again") from exc
            if time.monotonic() > deadline:
                raise StackError(f"{self.name}: the tasks did not take up {', '.join(tables)}; "
                                 f"`cdcapp backfill --source {self.source} --table ...` snapshots them")
            time.sleep(1)
        echo(f"{self.name}: snapshot of " + ", ".join(f"{t} ({p.rows or 0:,} rows)" for t, p in progress.tables.items()))

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


def deployed_states(settings: Settings) -> list[tuple[str, str, str | None]]:
    """(name, Debezium's logical name (``topic.prefix``, what its notifications call it), None when
    capturing else why not) of each cdcapp connector deployed in Connect; ``ProbeFailed`` when
    Connect does not answer."""
    connectors = [Connector(settings, source) for source in SOURCES]
    deployed = set(rest(f"{connectors[0].endpoints.connect_url}/connectors", timeout=5))
    return [(c.spec["name"], c.spec["config"]["topic.prefix"], c.check()) for c in connectors
            if c.spec["name"] in deployed]
