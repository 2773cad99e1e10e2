"""docker-compose.yml cannot run here (no Docker engine): check that it describes the same stack as
the native one - services, host ports, broker and Connect settings, connector configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdcapp.config import Settings
from cdcapp.stack.base import DEBEZIUM_DIR
from cdcapp.stack.connectors import SOURCES, Endpoints, connector_spec
from cdcapp.stack.install import pom_versions
from cdcapp.stack.mariadb import CDC_PRIVILEGES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# The defaults, not the environment: they are what both stacks are written for.
DEFAULTS = Settings.model_construct()

# Container port of each service's native one.
CONTAINER_PORTS = {
    "postgres": [(DEFAULTS.pg_port, 5432)],
    "mariadb": [(DEFAULTS.mariadb_port, 3306)],
    "clickhouse": [(DEFAULTS.clickhouse_port, 9000), (DEFAULTS.clickhouse_http_port, 8123)],
    "kafka": [(DEFAULTS.kafka_port, DEFAULTS.kafka_port)],
    "connect": [(DEFAULTS.connect_port, 8083)],
    "prometheus": [(DEFAULTS.prometheus_port, 9090)],
}
# Broker settings both stacks must share (listeners and paths differ by nature).
BROKER_KEYS = [
    "process.roles", "node.id", "controller.listener.names", "inter.broker.listener.name",
    "num.partitions", "auto.create.topics.enable", "default.replication.factor",
    "offsets.topic.replication.factor", "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr", "min.insync.replicas",
    "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr",
    "group.initial.rebalance.delay.ms",
]
COMPOSE_ENDPOINTS = Endpoints(
    connect_url="http://connect:8083", pg_host="postgres", mariadb_host="mariadb", kafka_bootstrap="kafka:9092"
)


def properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_services() -> None:
    assert {"postgres", "mariadb", "clickhouse", "kafka", "connect", "connectors", "worker", "prometheus",
            "grafana"} <= set(SERVICES)


@pytest.mark.parametrize("service", sorted(CONTAINER_PORTS))
def test_host_ports_are_the_native_ones(service: str) -> None:
    wanted = {f"{host}:{container}" for host, container in CONTAINER_PORTS[service]}
    assert set(SERVICES[service]["ports"]) == wanted


def test_postgres() -> None:
    svc = SERVICES["postgres"]
    assert svc["image"].startswith("postgres:15")
    assert "wal_level=logical" in svc["command"]
    assert env("postgres") == {
        "POSTGRES_USER": DEFAULTS.pg_user, "POSTGRES_PASSWORD": DEFAULTS.pg_password, "POSTGRES_DB": DEFAULTS.pg_db,
    }
    assert any(v.startswith("./cdcapp/sources/schema/postgres.sql:") for v in svc["volumes"])


def test_mariadb() -> None:
    svc = SERVICES["mariadb"]
    assert svc["image"].startswith("mariadb:10.11")
    assert {"--server-id=1", "--log-bin=mariadb-bin", "--binlog-format=ROW", "--binlog-row-image=FULL"} <= set(
        svc["command"]
    )
    e = env("mariadb")
    assert (e["MARIADB_USER"], e["MARIADB_PASSWORD"], e["MARIADB_DATABASE"]) == (
        DEFAULTS.mariadb_user, DEFAULTS.mariadb_password, DEFAULTS.mariadb_db,
    )
    assert any(v.startswith("./cdcapp/sources/schema/mariadb.sql:") for v in svc["volumes"])
    grants = COMPOSE["configs"][svc["configs"][0]["source"]]["content"]
    assert f"GRANT {CDC_PRIVILEGES} ON *.* TO '{DEFAULTS.mariadb_user}'@'%'" in grants


def test_clickhouse() -> None:
    assert env("clickhouse")["CLICKHOUSE_DB"] == DEFAULTS.database()
    assert env("clickhouse")["TZ"] == "UTC"


def test_kafka_matches_native_broker() -> None:
    svc = SERVICES["kafka"]
    assert svc["image"] == f"apache/kafka:{pom_versions()['kafka.version']}"
    native = properties(DEBEZIUM_DIR / "kafka-server.properties")
    e = env("kafka")
    for key in BROKER_KEYS:
        assert e.get("KAFKA_" + key.upper().replace(".", "_")) == native[key], key
    assert e["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert f"HOST://127.0.0.1:{DEFAULTS.kafka_port}" in e["KAFKA_ADVERTISED_LISTENERS"]


def test_connect_matches_native_worker() -> None:
    native = properties(DEBEZIUM_DIR / "connect-distributed.properties")
    e = env("connect")
    # The Debezium image's own variable names, then CONNECT_<property> for the rest.
    image_names = {
        "GROUP_ID": "group.id",
        "CONFIG_STORAGE_TOPIC": "config.storage.topic",
        "OFFSET_STORAGE_TOPIC": "offset.storage.topic",
        "STATUS_STORAGE_TOPIC": "status.storage.topic",
        "CONFIG_STORAGE_REPLICATION_FACTOR": "config.storage.replication.factor",
        "OFFSET_STORAGE_REPLICATION_FACTOR": "offset.storage.replication.factor",
        "STATUS_STORAGE_REPLICATION_FACTOR": "status.storage.replication.factor",
        "KEY_CONVERTER": "key.converter",
        "VALUE_CONVERTER": "value.converter",
        "OFFSET_FLUSH_INTERVAL_MS": "offset.flush.interval.ms",
    }
    compose = {prop: e[name] for name, prop in image_names.items()}
    compose |= {k[len("CONNECT_"):].lower().replace("_", "."): v for k, v in e.items() if k.startswith("CONNECT_")}
    for prop, value in compose.items():
        assert native[prop] == value, prop
    assert native["key.converter.schemas.enable"] == native["value.converter.schemas.enable"] == "true"
    assert "key.converter.schemas.enable" in compose and "value.converter.schemas.enable" in compose
    assert e["BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert SERVICES["connect"]["image"].startswith("quay.io/debezium/connect:" + pom_versions()["debezium.version"][:3])


def test_connectors_one_shot_deploys_the_same_configs() -> None:
    svc = SERVICES["connectors"]
    cmd = svc["command"]
    assert cmd[:3] == ["cdcapp", "stack", "connectors"]
    assert option(cmd, "--connect-url") == COMPOSE_ENDPOINTS.connect_url
    assert option(cmd, "--pg-host") == COMPOSE_ENDPOINTS.pg_host
    assert option(cmd, "--mariadb-host") == COMPOSE_ENDPOINTS.mariadb_host
    assert option(cmd, "--kafka-bootstrap") == COMPOSE_ENDPOINTS.kafka_bootstrap
    e = env("connectors")
    # Ports as Connect sees them inside the network: the containers' own.
    assert int(e["CDCAPP_PG_PORT"]) == CONTAINER_PORTS["postgres"][0][1]
    assert int(e["CDCAPP_MARIADB_PORT"]) == CONTAINER_PORTS["mariadb"][0][1]
    assert {"postgres", "mariadb", "connect"} <= set(svc["depends_on"])


@pytest.mark.parametrize("source", SOURCES)
def test_connector_configs(source: str) -> None:
    docker = Settings.model_construct(pg_port=5432, mariadb_port=3306)
    native = connector_spec(source, DEFAULTS, Endpoints.native(DEFAULTS))["config"]
    compose = connector_spec(source, docker, COMPOSE_ENDPOINTS)["config"]
    assert connector_spec(source, DEFAULTS, Endpoints.native(DEFAULTS))["name"] == f"cdcapp-{source}"
    assert native["topic.prefix"] == compose["topic.prefix"] == source
    differing = {k for k in native if native[k] != compose[k]}
    if source == "postgres":
        assert native["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
        assert (native["database.hostname"], native["database.port"]) == ("127.0.0.1", str(DEFAULTS.pg_port))
        assert (compose["database.hostname"], compose["database.port"]) == ("postgres", "5432")
        assert native["plugin.name"] == "pgoutput"
        assert native["slot.name"] == "cdcapp_postgres"
        assert native["publication.name"] == "cdcapp_publication"
        assert native["publication.autocreate.mode"] == "filtered"
        assert native["signal.data.collection"] == "public.debezium_signal"
        assert differing == {"database.hostname", "database.port"}
    else:
        assert native["connector.class"] == "io.debezium.connector.mariadb.MariaDbConnector"
        assert (native["database.hostname"], native["database.port"]) == ("127.0.0.1", str(DEFAULTS.mariadb_port))
        assert (compose["database.hostname"], compose["database.port"]) == ("mariadb", "3306")
        assert native["signal.data.collection"] == f"{DEFAULTS.mariadb_db}.debezium_signal"
        assert native["schema.history.internal.kafka.topic"] == "cdcapp-schema-history.mariadb"
        assert native["schema.history.internal.kafka.bootstrap.servers"] == f"127.0.0.1:{DEFAULTS.kafka_port}"
        assert compose["schema.history.internal.kafka.bootstrap.servers"] == "kafka:9092"
        assert differing == {"database.hostname", "database.port", "schema.history.internal.kafka.bootstrap.servers"}
    assert native["snapshot.mode"] == "initial"
    assert native["topic.creation.default.partitions"] == "4"
    assert native["topic.creation.default.replication.factor"] == "1"
    # What to capture and where it goes come from the spec (tests/unit/test_capture.py).
    assert not {"table.include.list", "database.include.list", "transforms"} & set(native)
    # Payloads without their schema, so decimals as exact strings; default time precision, tombstones.
    assert native["value.converter.schemas.enable"] == "false"
    assert native["decimal.handling.mode"] == "string"
    assert not {"time.precision.mode", "tombstones.on.delete"} & set(native)
    assert not any("${" in v for v in native.values())


def test_worker() -> None:
    svc = SERVICES["worker"]
    assert svc["command"][:4] == ["faust", "-A", "cdcapp.app", "worker"]
    e = env("worker")
    assert e["CDCAPP_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert e["CDCAPP_CLICKHOUSE_URL"] == f"clickhouse://default@clickhouse:9000/{DEFAULTS.database()}"
    assert svc["build"]["context"] == "."
    assert svc["ports"] == ["127.0.0.1:6066:6066"], "the web views are published on the host's loopback only"
    assert e["CDCAPP_WEB_TOKEN"] == "${CDCAPP_WEB_TOKEN:-}"


def test_prometheus_scrapes_the_worker_with_the_native_alert_rules() -> None:
    from cdcapp.stack.prometheus import RULES

    config = yaml.safe_load(COMPOSE["configs"]["prometheus-config"]["content"])
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "cdcapp-workers" and job["static_configs"][0]["targets"] == ["worker:6066"]
    mounted = [v for v in SERVICES["prometheus"]["volumes"] if v.endswith(":/etc/prometheus/alerts.yml:ro")]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert (ROOT / mounted[0].split(":")[0]).resolve() == RULES


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    import json

    svc = SERVICES["grafana"]
    assert svc["ports"] == ["127.0.0.1:13000:3000"]
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/cdcapp.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
