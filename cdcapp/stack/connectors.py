"""The Debezium connectors, deployed through the Connect REST API from ``debezium/*-connector.json``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from cdcapp.config import Settings
from cdcapp.stack.base import DEBEZIUM_DIR, HOST, Echo, ProbeFailed, Service, StackError, render
from cdcapp.stack.connect import rest

SOURCES = ("postgres", "mariadb")


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
        try:
            self.deploy(echo)
        except ProbeFailed as e:
            raise StackError(f"{self.name}: deploy failed: {e}; see {self.log_path}") from e
        deadline = time.monotonic() + self.start_timeout
        while True:
            why = self.check()
            if why is None:
                return
            if "FAILED" in why or time.monotonic() > deadline:
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

    def stop(self) -> bool:
        # The config stays in Connect's topics; stopping Connect stops the connector.
        return False
