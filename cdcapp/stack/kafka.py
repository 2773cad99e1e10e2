"""Kafka 4.1 as one KRaft node (broker and controller), data in ``<state>/kafka``."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import subprocess
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from cdcapp.stack.base import DEBEZIUM_DIR, HOST, Echo, ProbeFailed, ProcessService, StackError, quiet, render

HEALTH_TOPIC = "cdcapp-health"
KAFKA_LIB = DEBEZIUM_DIR / "lib" / "kafka"
PLUGIN_DIR = DEBEZIUM_DIR / "lib" / "plugins"

T = TypeVar("T")


def java_command(main_class: str, *args: str, heap: str = "1g", jvm: tuple[str, ...] = ()) -> list[str]:
    return [
        "java",
        *jvm,
        f"-Xmx{heap}",
        "-Xms256m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={DEBEZIUM_DIR / 'log4j2.properties'}",
        "-cp",
        f"{KAFKA_LIB}/*",
        main_class,
        *args,
    ]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def round_trip(bootstrap: str, timeout_s: float = 10.0) -> None:
    """Produce one record to the health topic and read that very record back."""
    token = uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        async with asyncio.timeout(timeout_s):
            await producer.start()
            meta = await producer.send_and_wait(HEALTH_TOPIC, token, partition=0)
            await consumer.start()
            tp = TopicPartition(HEALTH_TOPIC, 0)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            record = await consumer.getone()
            if record.value != token:
                raise ProbeFailed(f"read back {record.value!r} instead of the record produced")
    finally:
        await producer.stop()
        await consumer.stop()


class Kafka(ProcessService):
    name = "kafka"
    start_timeout = 120.0
    stop_timeout = 60.0

    @property
    def data_dir(self) -> Path:
        return self.state / "kafka"

    @property
    def config_path(self) -> Path:
        return self.state / "conf" / "kafka-server.properties"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.settings.kafka_port}"

    @property
    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    @property
    def address(self) -> str:
        return f"kafka://{self.bootstrap} (controller :{self.settings.kafka_controller_port})"

    def prepare(self, echo: Echo) -> None:
        s = self.settings
        log_dir = self.data_dir / "data"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render(
                (DEBEZIUM_DIR / "kafka-server.properties").read_text(),
                {"KAFKA_PORT": s.kafka_port, "KAFKA_CONTROLLER_PORT": s.kafka_controller_port,
                 "KAFKA_LOG_DIRS": log_dir},
            )
        )
        if (log_dir / "meta.properties").exists():
            return
        cluster_id_file = self.data_dir / "cluster.id"
        if not cluster_id_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            cluster_id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") + "\n")
        cluster_id = cluster_id_file.read_text().strip()
        echo(f"kafka: formatting {log_dir} (cluster id {cluster_id})")
        done = subprocess.run(
            java_command("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_path),
                         heap="256m"),
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise StackError(f"kafka: storage format failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")

    def command(self) -> list[str]:
        return java_command("kafka.Kafka", str(self.config_path))

    def probe(self) -> None:
        try:
            with quiet("aiokafka"):
                run_sync(round_trip(self.bootstrap))
        except (KafkaError, OSError, TimeoutError) as e:
            raise ProbeFailed(f"produce/consume round trip on {HEALTH_TOPIC}: {e!r}") from e
