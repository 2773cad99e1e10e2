"""A pipeline of its own on the shared stack: a fresh namespace (consumer group, internal topics,
ClickHouse database) and its workers as child processes. The end-to-end tests and the benchmark
run pipelines this way, side by side with anything else on the stack."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cdcapp.clickhouse.client import is_server, open_target, pipeline_database
from cdcapp.clickhouse.ddl import quote
from cdcapp.config import Settings
from cdcapp.kafka_admin import delete_topics
from cdcapp.model.spec import Spec, load_spec
from cdcapp.tools.verify import Report, verify
from cdcapp.tools.worker_process import WorkerProcess


#: ports handed out by this process, so that two workers started close together never share one
_given: set[int] = set()


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (those it gives outgoing connections)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port for a worker's web server, below the kernel's ephemeral range.

    A port from ``bind(("", 0))`` is an ephemeral one, and between its release and the worker's
    bind, seconds later, any outgoing connection on the machine may take it as its local port;
    the worker then exits at start with EADDRINUSE. Below the range, only a listener can."""
    low = ephemeral_low()
    candidates = range(max(1024, low - 12_000), low)
    for port in random.sample(candidates, min(200, len(candidates))):
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {candidates.start}-{candidates.stop - 1}")


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    spec: Spec = field(default_factory=load_spec)
    workers: list[WorkerProcess] = field(default_factory=list)

    @classmethod
    def fresh(cls, base: Settings, log_dir: Path, clickhouse_url: str | None = None, prefix: str = "t",
              own_sources: bool = False, spec_path: Path | None = None, **overrides: str) -> "Pipeline":
        """``own_sources``: source topics of its own (``<namespace>-src.<table>``), empty but for what
        the caller sends there, instead of the shared ``oltp.*`` topics and their whole history.
        ``spec_path``: the workers' spec (default: the built-in one)."""
        namespace = f"{prefix}{uuid.uuid4().hex[:10]}"
        source_prefix = f"{namespace}-src" if own_sources else base.source_topic_prefix
        # No database in the URL and no topic prefix: both derive from the app id.
        url = clickhouse_url or f"clickhouse://default@127.0.0.1:{base.clickhouse_port}"
        env = {
            "CDCAPP_APP_ID": namespace,
            "CDCAPP_CLICKHOUSE_URL": url,
            "CDCAPP_STATE_DIR": str(base.state_path),
            "CDCAPP_STORE": "rocksdb://",
            "CDCAPP_SOURCE_TOPIC_PREFIX": source_prefix,
            "CDCAPP_PG_DB": base.pg_db,
            **({"CDCAPP_SPEC_PATH": str(spec_path)} if spec_path else {}),
            **overrides,
        }
        settings = base.model_copy(update={"app_id": namespace, "internal_topic_prefix": namespace,
                                           "clickhouse_url": url, "source_topic_prefix": source_prefix,
                                           **({"spec_path": spec_path} if spec_path else {})})
        return cls(settings, env, log_dir, spec=load_spec(spec_path))

    @property
    def database(self) -> str:
        return pipeline_database(self.settings, self.spec)

    def start_worker(self, wait: bool = True) -> WorkerProcess:
        port = free_port()
        worker = WorkerProcess(self.env, port, self.log_dir / f"{self.settings.app_id}-worker-{port}.log").start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def verify(self, kind: str, source_id: str | None = None, sqlite_path: Path | None = None,
               wait_s: float = 600.0, live: bool = False) -> Report:
        live = [w for w in self.workers if w.process and w.process.poll() is None]
        worker_url = live[0].url if live and not is_server(self.settings.resolved_clickhouse_url) else None
        return verify(self.settings, self.spec, kind, source_id, sqlite_path, wait_s=wait_s, worker_url=worker_url,
                      live=live)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def remove(self) -> None:
        """Stop the workers and delete what the pipeline left on the shared stack: its topics
        (internal, changelogs, own sources, a rebuild's generations: all named after the app id),
        its ClickHouse databases named after the app id (not one a spec names) and its workers'
        table state. Every namespace left behind slows the stack's Kafka a little, and a test
        suite makes dozens."""
        self.stop()
        app_id = self.settings.app_id
        asyncio.run(delete_topics(self.settings.kafka_bootstrap, app_id))
        url = self.settings.resolved_clickhouse_url
        own = self.settings.model_copy(update={"clickhouse_db": None}).database()
        if is_server(url) and self.database.startswith(own):
            target = open_target(url, "default")
            try:
                for name, in target.query("SELECT name FROM system.databases"):
                    if name.startswith(own):
                        target.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
            finally:
                target.close()
        for state in (self.settings.state_path / "workers").glob(f"{app_id}-*"):
            shutil.rmtree(state, ignore_errors=True)
