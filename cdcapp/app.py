"""The Faust application: ``faust -A cdcapp.app worker`` (or ``cdcapp worker``).

    <source>.<table>  --ingest-->  <prefix>.stage.<entity>  --join (tables)-->  <prefix>.sink  --> ClickHouse
                         \\                    ^      |                                \\
                          `--> <prefix>.dlq     `-sub/info between stages                `--> <prefix>.dlq

Everything is declared from the spec (``CDCAPP_SPEC_PATH``, default the seed's e-commerce model)
and the settings (``cdcapp.config``); see docs/architecture.md for the design.
"""

from __future__ import annotations

import faust

from cdcapp import faust_fixes, ingest
from cdcapp.config import get_settings
from cdcapp.join import agents as join_agents
from cdcapp.sink import agent as sink_agent
from cdcapp.sink.clickhouse import ClickHouseWriter
from cdcapp.sink.policy import FlushPolicy
from cdcapp.sink.schema import table_shapes
from cdcapp.spec import load_spec
from cdcapp.topics import Topics, create_missing_topics
from cdcapp.web import views

settings = get_settings()
spec = load_spec(settings.spec_path)
# One RocksDB folder per app id and web port: two workers on one machine must not share one.
workers_dir = settings.state_path / "workers"
workers_dir.mkdir(parents=True, exist_ok=True)

class CdcApp(faust.App):
    async def on_first_start(self) -> None:
        await super().on_first_start()
        await create_missing_topics(self, topics.all_declared(), settings.replication_factor)


faust_fixes.apply()

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
    broker_max_poll_records=2000,
    stream_buffer_maxsize=8192,
)

topics = Topics.declare(app, spec, settings)
ingest.register(app, spec, topics)
stage_tables = join_agents.register(app, spec, topics, settings.partitions)
sink = sink_agent.Sink(
    ClickHouseWriter(settings.resolved_clickhouse_url, spec),
    table_shapes(spec),
    FlushPolicy(settings.flush_rows, settings.flush_interval_ms / 1000),
    settings.sink_retry_max_s,
)
sink_agent.register(app, topics, sink, check_interval_s=min(0.1, settings.flush_interval_ms / 4000))
views.register(app, spec, stage_tables, sink)
