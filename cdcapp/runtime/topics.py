"""Every Kafka topic the app reads or writes, with explicit names.

=================================  ===========  ==============================================
topic                              key          value
=================================  ===========  ==============================================
<source prefix>.<table>            Debezium     Debezium envelope (JSON, with/without schema)
<prefix>.stage                    none         a batch of stage messages (chg / sub / unsub / info)
<prefix>.sink                      none         a batch of sink rows
<prefix>.dlq                       source key   what could not be processed, and why
<app_id>-<entity>-state-changelog  entity key   the stage's state table (Faust changelog)
<app_id>-<entity>-subscriptions-   parent,      one entry per subscribed child
changelog                          child
=================================  ===========  ==============================================

The stage agent reads the Debezium topics and the stage topic: a change whose key's stage
partition this worker holds is joined at once, the others go to the stage topic (``runtime.stage``).
Every message about one key - whoever sends it - goes to the key's partition
(``cdcapp.model.messages.partition_of``), and the stage's tables (partitioned like the stage topic)
hold the key's state there. All entities share one stage topic, each message naming its entity
(``e``): a batch's messages for one partition then travel as one record, whichever entities they
are for, and Faust's and Kafka's per-record costs are paid once per partition instead of once per
entity and partition (docs/performance.md).
Names are explicit rather than derived from agent names, so renaming code orphans nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from cdcapp.config import Settings
from cdcapp.kafka_admin import TopicSpec, create_missing_topics, dlq_topic, sink_topic, stage_topic
from cdcapp.model.spec import Spec
from cdcapp.sources.capture import entity_topic

log = logging.getLogger(__name__)


def _raw_topic(app: faust.App, partitions: int, *names: str) -> faust.TopicT:
    # internal=True makes Faust create the topic when missing (an existing one is left as it is),
    # so a worker started before Debezium's first snapshot still subscribes to every topic.
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        partitions=partitions, internal=True, allow_empty=True,
    )


@dataclass
class Topics:
    app: faust.App
    sources: dict[str, str]  # entity -> Debezium topic
    source: faust.TopicT  # every Debezium topic
    stage: faust.TopicT
    sink: faust.TopicT
    dlq: faust.TopicT
    stage_input: faust.TopicT  # every Debezium topic and the stage topic: what the stage agent reads

    def __post_init__(self) -> None:
        self.stage_name = self.stage.get_topic_name()
        self.sink_name = self.sink.get_topic_name()

    @classmethod
    def declare(cls, app: faust.App, spec: Spec, settings: Settings) -> "Topics":
        prefix, partitions = settings.internal_topic_prefix, settings.partitions
        sources = {name: entity_topic(spec, name, settings) for name in spec.entities}
        return cls(
            app=app,
            sources=sources,
            source=_raw_topic(app, partitions, *sources.values()),
            stage=_raw_topic(app, partitions, stage_topic(prefix)),
            sink=_raw_topic(app, partitions, sink_topic(prefix)),
            dlq=_raw_topic(app, partitions, dlq_topic(prefix)),
            stage_input=_raw_topic(app, partitions, *sources.values(), stage_topic(prefix)),
        )

    def all_declared(self) -> list[faust.TopicT]:
        return [self.source, self.stage, self.sink, self.dlq]


async def create_declared_topics(app: faust.App, topics: list[faust.TopicT], replication_factor: int) -> None:
    """Create every topic and table changelog before the consumer group first assigns partitions.

    Faust declares its topics itself, but concurrently with the first assignment: a topic created
    a moment too late is left out of that assignment (\"Ignoring missing topic\") and its agent
    idles until the next rebalance. Creating them up front closes that race.
    """
    wanted = [
        TopicSpec(name, topic.partitions or app.conf.topic_partitions, replication_factor)
        for topic in topics for name in topic.topics
    ]
    wanted += [
        TopicSpec(table.changelog_topic.get_topic_name(), table.partitions or app.conf.topic_partitions,
                  replication_factor, {"cleanup.policy": "compact"})
        for table in app.tables.values()
    ]
    await create_missing_topics(",".join(f"{url.host}:{url.port}" for url in app.conf.broker), wanted)
