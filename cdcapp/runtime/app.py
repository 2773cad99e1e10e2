"""The Faust application, built from settings and a spec by ``create_app``.

    <source>.<table> --.
                        >--> ingest + join (tables) --> <prefix>.sink --> sink --> ClickHouse
    <prefix>.stage -----'          |
          ^------------------------'  sub / info between stages, and the changes of keys
                                      whose partition another worker joins
    (anything that cannot be processed --> <prefix>.dlq)

See docs/architecture.md for the design.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass

import faust

from cdcapp.clickhouse import generation
from cdcapp.clickhouse.client import ClickHouse, is_server
from cdcapp.config import Settings
from cdcapp.debezium.epochs import Epochs
from cdcapp.kafka_admin import epochs_topic, read_latest
from cdcapp.logfmt import json_logging
from cdcapp.model.spec import Spec, load_spec
from cdcapp.runtime import ingest, sink, snapshots, stage, web
from cdcapp.runtime.faust import pinned
from cdcapp.runtime.faust.transport import Transport
from cdcapp.runtime.live import Live
from cdcapp.runtime.metrics import CONSUMER_LAG
from cdcapp.runtime.schema import SchemaSync
from cdcapp.runtime.tables import StageTables
from cdcapp.runtime.topics import Topics, create_declared_topics

log = logging.getLogger(__name__)


class CdcApp(faust.App):
    """Faust's app with cdcapp's transport (the corrections of ``cdcapp.runtime.faust``) and its
    topics created before the first assignment."""

    pipeline: "Pipeline"
    #: topics whose fetched records reach their agent a partition run at a time (runtime/faust/bulk.py)
    bulk_topics: frozenset[str] = frozenset()
    #: how long a fetch may wait at the broker for records (runtime/faust/consumer.py)
    fetch_max_wait_ms: int = 1500

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Transport:
        return Transport(self.conf.broker_producer, self)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        settings = self.pipeline.settings
        await create_declared_topics(self, self.pipeline.topics.all_declared(), settings.replication_factor)
        # Before any agent reads a source record: its position depends on its source's epoch.
        latest = await read_latest(settings.kafka_bootstrap, epochs_topic(settings.internal_topic_prefix))
        self.pipeline.epochs.by_source.update(Epochs.from_records(latest).by_source)


@dataclass
class Pipeline:
    """What ``create_app`` wired, for the web views and the tests."""

    settings: Settings
    spec: Spec
    topics: Topics
    stage_tables: dict[str, StageTables]
    sink: sink.EventSink
    clickhouse: ClickHouse
    epochs: Epochs


def tune_interpreter() -> None:
    """Collect cycles less often, never scan what start-up built, and hand the GIL over sooner.

    A worker allocates dicts by the million (messages, rows, states), nearly all freed by
    reference counting: they hold no cycles. CPython's default generation thresholds (700, 10, 10)
    still scan the young objects every 700 allocations and the whole heap often; measured on the
    join's batches, that cost about a third of the time (docs/performance.md).

    The ClickHouse insert thread and Faust's consumer thread wait on sockets, and after each read
    they wait for the GIL until the busy event loop is made to drop it: up to the switch interval,
    5 ms by default, a dozen times per insert. At 1 ms an insert of a flush took 26 ms instead of
    190 ms in a worker at 1,000 changes/s (docs/performance.md).
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    sys.setswitchinterval(0.001)


def create_app(settings: Settings, spec: Spec | None = None) -> CdcApp:
    pinned.check()
    spec = spec or load_spec(settings.spec_path)
    workers_dir = settings.state_path / "workers"
    if settings.worker_dir is None:
        # One RocksDB folder per app id and web port: two workers on one machine must not share one.
        workers_dir.mkdir(parents=True, exist_ok=True)
    app = CdcApp(
        settings.app_id,
        broker=";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")),
        store=settings.store,
        datadir=str(settings.worker_dir or workers_dir / "{conf.id}-{conf.web_port}"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_tables_enabled=False,
        producer_linger_ms=5,
        # Faust's default, relied on: a send flushed is below the high watermark, which is what
        # a partition's next owner reads as its end offset (stage.Handover).
        producer_acks=-1,
        broker_max_poll_records=2000,
        broker_session_timeout=settings.session_timeout_s,
        # Messages waiting per agent: a message is a run of up to 2,000 source records or a stage
        # record of up to 2,000 messages, so Faust's 4,096 would hold gigabytes under a backlog.
        stream_buffer_maxsize=32,
        logging_config=json_logging() if settings.log_format == "json" else None,
    )
    topics = Topics.declare(app, spec, settings)
    app.bulk_topics = frozenset(topics.sources.values())
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    linger_s = settings.batch_linger_ms / 1000
    epochs = Epochs()
    acks = sink.StreamAcks()
    event_sink, clickhouse = sink.build_sink(settings, spec, acks, topics)
    schema = SchemaSync(spec, settings, clickhouse, event_sink.buffer.shapes)
    stage_tables = stage.register(app, spec, topics, settings.partitions, linger_s,
                                  ingest.Ingest(spec, topics, epochs, schema))
    sink.register(app, topics, event_sink, acks, clickhouse, schema,
                  check_interval_s=min(0.1, settings.flush_interval_ms / 4000))
    app.pipeline = Pipeline(settings, spec, topics, stage_tables, event_sink, clickhouse, epochs)
    live = Live(settings, clickhouse)
    web.register(app, spec, stage_tables, event_sink, clickhouse, settings.partitions, live, settings.web_token)
    snapshots.register(app, settings.kafka_bootstrap, live.snapshots)
    watch_generation(app, clickhouse, settings.app_id)
    report_consumer_lag(app)
    return app


def report_consumer_lag(app: faust.App) -> None:
    """``cdcapp_consumer_lag_messages`` of the partitions this worker reads, once a second."""

    @app.timer(interval=1.0, name="cdcapp.consumer-lag")
    async def consumer_lag() -> None:
        consumer = app.consumer
        CONSUMER_LAG.clear()  # partitions move between workers: report only the ones held now
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog"):
                continue
            end, read = consumer.highwater(tp), consumer._read_offset[tp]
            if end is not None and read is not None:  # before the first read the position is not known here
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - (read + 1)))


def watch_generation(app: faust.App, clickhouse: ClickHouse, app_id: str) -> None:
    """Exit once ``cdcapp rebuild`` hands the database to another generation (clickhouse/generation.py).

    The exit is immediate: not another row is written, and nothing is committed, which no longer
    matters to a generation whose tables are being swapped out. The rebuild waits for this
    generation's consumer group to empty before it swaps.
    """
    if not is_server(clickhouse.url):
        return

    @app.timer(interval=1.0, name="cdcapp.generation-watch")
    async def exit_when_superseded() -> None:
        try:
            newer = await clickhouse.run(lambda target: generation.superseded(target, app_id))
        except Exception as exc:  # noqa: BLE001 - ClickHouse down: the sink reports it; look again later
            log.debug("generation check failed: %s", exc)
            return
        if newer is not None:
            log.error("generation %s is superseded by %s (cdcapp rebuild): exiting without writing another row; "
                      "run the worker again to join %s", app_id, newer.app_id, newer.app_id)
            logging.shutdown()
            os._exit(generation.SUPERSEDED_EXIT)
