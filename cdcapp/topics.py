"""Every Kafka topic the app reads or writes, with explicit names.

=================================  ===========  ==============================================
topic                              key          value
=================================  ===========  ==============================================
<source prefix>.<table>            Debezium     Debezium envelope (JSON, with/without schema)
<prefix>.stage.<entity>            entity key   stage message (chg / sub / unsub / info)
<prefix>.sink                      table|key    {"table", "row", "ts"} canonical row
<prefix>.dlq                       source key   what could not be processed, and why
<app_id>-<entity>-state-changelog  entity key   the stage's table (Faust changelog)
=================================  ===========  ==============================================

Entity keys are ``<source id>|<primary key...>`` (``postgres|42``) and are hashed by Kafka's
default partitioner, so every message about one key - whoever sends it - lands in one partition
of the stage topic, and the stage's tables (partitioned like that topic) hold it there.
Names are explicit rather than derived from agent names, so renaming code orphans nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from cdcapp.config import Settings
from cdcapp.spec import Spec


def _raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    # internal=True makes Faust create the topic when missing (an existing one is left as it is),
    # so a worker started before Debezium's first snapshot still subscribes to every topic.
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        partitions=partitions, internal=True, allow_empty=True,
    )


@dataclass
class Topics:
    sources: dict[str, faust.TopicT]  # entity -> Debezium topic
    stages: dict[str, faust.TopicT]  # entity -> stage topic
    sink: faust.TopicT
    dlq: faust.TopicT

    @classmethod
    def declare(cls, app: faust.App, spec: Spec, settings: Settings) -> "Topics":
        prefix, partitions = settings.internal_topic_prefix, settings.partitions
        return cls(
            sources={
                name: _raw_topic(app, entity.topic or f"{settings.source_topic_prefix}.{name}", partitions)
                for name, entity in spec.entities.items()
            },
            stages={name: _raw_topic(app, f"{prefix}.stage.{name}", partitions) for name in spec.entities},
            sink=_raw_topic(app, f"{prefix}.sink", partitions),
            dlq=_raw_topic(app, f"{prefix}.dlq", partitions),
        )
