"""Kafka Connect in distributed mode (one worker) with the Debezium plugins, REST on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from cdcapp.stack.base import DEBEZIUM_DIR, HOST, Echo, ProbeFailed, ProcessService, render
from cdcapp.stack.install import jmx_exporter_jar
from cdcapp.stack.kafka import PLUGIN_DIR, java_command

#: which beans the JMX exporter serves, and how it names them
JMX_EXPORTER_CONFIG = DEBEZIUM_DIR / "connect-metrics.yaml"

REQUIRED_PLUGINS = (
    "io.debezium.connector.postgresql.PostgresConnector",
    "io.debezium.connector.mariadb.MariaDbConnector",
)


def rest(url: str, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
    """Call the Connect REST API; raise ProbeFailed with Connect's own message on any failure."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        raise ProbeFailed(f"{method} {url}: HTTP {e.code} {e.read().decode(errors='replace')[:500]}") from e
    except (urllib.error.URLError, OSError) as e:
        raise ProbeFailed(f"{method} {url}: {e}") from e
    return json.loads(raw) if raw else None


class Connect(ProcessService):
    name = "connect"
    start_timeout = 180.0
    stop_timeout = 60.0

    @property
    def config_path(self):
        return self.state / "conf" / "connect-distributed.properties"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.settings.connect_port}"

    @property
    def ports(self) -> list[int]:
        return [self.settings.connect_port, self.settings.connect_metrics_port]

    @property
    def address(self) -> str:
        return self.url

    def prepare(self, echo: Echo) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render(
                (DEBEZIUM_DIR / "connect-distributed.properties").read_text(),
                {"KAFKA_PORT": self.settings.kafka_port, "CONNECT_PORT": self.settings.connect_port,
                 "PLUGIN_PATH": PLUGIN_DIR},
            )
        )

    def command(self) -> list[str]:
        # Connect's and Debezium's metrics are JMX beans; the exporter serves them to Prometheus.
        agent = f"-javaagent:{jmx_exporter_jar()}={HOST}:{self.settings.connect_metrics_port}:{JMX_EXPORTER_CONFIG}"
        return java_command("org.apache.kafka.connect.cli.ConnectDistributed", str(self.config_path), jvm=(agent,))

    def probe(self) -> None:
        rest(self.url + "/", timeout=5)
        classes = {p["class"] for p in rest(self.url + "/connector-plugins", timeout=5)}
        missing = [c for c in REQUIRED_PLUGINS if c not in classes]
        if missing:
            raise ProbeFailed(f"plugins not loaded: {missing} (plugin.path={PLUGIN_DIR})")
