"""Settings, read once from the environment (prefix ``CDCAPP_``) or a ``.env``-style file.

Every option is documented here; nothing else in the package reads the environment.
Secrets (database passwords) come from the environment too and have local-only defaults
that match the native stack.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


#: the seed's app id, whose ClickHouse database keeps the seed's name
DEFAULT_APP_ID = "cdcapp"
SEED_DATABASE = "olap_db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CDCAPP_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    state_dir: Path = Field(
        default=Path(".state"),
        description="Folder for the native stack's data, logs and pid files and for worker stores.",
    )

    # --- Kafka / Faust -------------------------------------------------------------
    kafka_bootstrap: str = Field(default="127.0.0.1:19092", description="Kafka bootstrap servers.")
    app_id: str = Field(
        default=DEFAULT_APP_ID, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description="The pipeline's name, and its namespace: consumer group, changelog and internal topic "
        "prefix, worker folders and (unless set otherwise) ClickHouse database all derive from it, so that "
        "two pipelines with different app ids on one Kafka and one ClickHouse never touch each other.")
    source_topic_prefix: str = Field(default="oltp", description="Debezium topics are <prefix>.<table>.")
    internal_topic_prefix: str = Field(
        default="", description="Prefix of the app's own topics (sink, dead letters, epochs); default: the app id.")
    partitions: int = Field(default=4, ge=1, description="Partitions of every internal topic.")
    replication_factor: int = Field(default=1, ge=1, description="Replication of internal topics.")
    store: str = Field(default="rocksdb://", description="Faust table store: rocksdb:// or memory://.")
    worker_dir: Path | None = Field(
        default=None,
        description="Faust data dir (RocksDB). One per worker; default <state_dir>/workers/<app_id>-<web_port>.",
    )
    batch_linger_ms: int = Field(
        default=20, ge=0, description="How long an agent gathers events into one batch: the latency a hop may "
        "add, in exchange for sharing per-record costs under load.",
    )
    fetch_max_wait_ms: int = Field(
        default=50, ge=1, description="How long a Kafka fetch may wait at the broker for new records. Under "
        "load it bounds the wait of records that arrive on a partition left out of the fetch in flight, at "
        "every hop (Faust's fixed value is 1,500).",
    )
    session_timeout_s: float = Field(
        default=20.0, ge=6, description="How long the broker waits for a silent worker before it gives the "
        "worker's partitions to the others: after a crash, its partitions stand still this long (Faust's "
        "default is 60; heartbeats go every 3 s from the consumer thread, which the join work does not block).",
    )
    web_port: int = Field(default=6066, description="Faust web port (views, /metrics). One per worker.")
    web_host: str = Field(default="127.0.0.1", description="Faust web bind and advertised host.")
    web_token: str | None = Field(
        default=None, repr=False, description="Bearer token the /sql/ view requires. Without one, /sql/ answers "
        "only when the web server binds a loopback address.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Worker log lines: Faust's text, or one JSON object per line.",
    )
    spec_path: Path | None = Field(default=None, description="Pipeline spec YAML; default: built-in e-commerce.")

    # --- Sink -----------------------------------------------------------------------
    clickhouse_url: str = Field(
        default="",
        description="clickhouse://user:pass@host:port/db (server) or chdb:///path (embedded). "
        "Empty means chdb under <state_dir>/chdb.",
    )
    flush_rows: int = Field(default=10_000, ge=1, description="Flush the sink buffer at this many rows...")
    flush_interval_ms: int = Field(default=200, ge=1, description="...or when its oldest row is this old.")
    sink_retry_max_s: float = Field(default=30.0, description="Longest backoff between ClickHouse retries.")

    # --- Sources (verify, generate and the demo connect to them; the connector configs use them)
    pg_host: str = Field(default="127.0.0.1", description="PostgreSQL host.")
    pg_port: int = Field(default=15432, description="PostgreSQL port (the native stack's).")
    pg_user: str = Field(default="postgres", description="PostgreSQL user.")
    pg_password: str = Field(default="postgres", description="PostgreSQL password (a local-only default).")
    pg_db: str = Field(default="oltp_db", description="PostgreSQL database.")
    mariadb_host: str = Field(default="127.0.0.1", description="MariaDB/MySQL host.")
    mariadb_port: int = Field(default=13306, description="MariaDB/MySQL port (the native stack's).")
    mariadb_user: str = Field(default="cdc", description="MariaDB/MySQL user.")
    mariadb_password: str = Field(default="cdc", description="MariaDB/MySQL password (a local-only default).")
    mariadb_db: str = Field(default="oltp_db", description="MariaDB/MySQL database.")

    # --- Native stack (``cdcapp stack``): its services listen on 127.0.0.1 ---------------
    kafka_port: int = Field(default=19092, description="Kafka broker port.")
    kafka_controller_port: int = Field(default=19093, description="Kafka KRaft controller port.")
    connect_port: int = Field(default=18083, description="Kafka Connect REST port.")
    connect_metrics_port: int = Field(
        default=18084, description="Where Kafka Connect serves its and Debezium's metrics to Prometheus (JMX exporter).")
    clickhouse_port: int = Field(default=19000, description="ClickHouse server native-protocol port.")
    clickhouse_http_port: int = Field(default=18123, description="ClickHouse server HTTP port.")
    clickhouse_db: str = Field(
        default="", description="The pipeline's ClickHouse database where the URL names none; default: the "
        "spec's `database`, else olap_db for the app id cdcapp and the app id (- as _) for any other.")
    prometheus_port: int = Field(default=19090, description="Prometheus web port (it scrapes the workers).")

    @model_validator(mode="before")
    @classmethod
    def _namespace(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("internal_topic_prefix"):
            data = {**data, "internal_topic_prefix": data.get("app_id") or DEFAULT_APP_ID}
        return data

    def database(self, spec_database: str | None = None) -> str:
        """The pipeline's ClickHouse database, unless its URL names one (``pipeline_database``)."""
        if self.clickhouse_db or spec_database:
            return self.clickhouse_db or str(spec_database)
        return SEED_DATABASE if self.app_id == DEFAULT_APP_ID else re.sub(r"\W", "_", self.app_id)

    @property
    def state_path(self) -> Path:
        return self.state_dir.resolve()

    @property
    def resolved_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.state_path / 'chdb'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
