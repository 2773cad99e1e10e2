"""``cdcapp source reset-epoch``: start a new epoch for a source whose positions restarted
(``cdcapp.debezium.epochs``; the procedure is in docs/operations.md)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cdcapp.config import Settings
from cdcapp.debezium.epochs import Epoch, Epochs
from cdcapp.kafka_admin import (TopicSpec, create_missing_topics, end_offsets, epochs_topic, group_members,
                                produce_one, read_latest)
from cdcapp.model.spec import Spec
from cdcapp.sources.capture import entity_topic


class EpochRefused(RuntimeError):
    pass


def source_topics(settings: Settings, spec: Spec) -> list[str]:
    return [entity_topic(spec, name, settings) for name in spec.entities]


async def create_epochs_topic(settings: Settings) -> str:
    topic = epochs_topic(settings.internal_topic_prefix)
    # One partition: the few records are read whole by every worker as it starts.
    await create_missing_topics(settings.kafka_bootstrap,
                                [TopicSpec(topic, 1, settings.replication_factor, {"cleanup.policy": "compact"})])
    return topic


async def read_epochs(settings: Settings) -> Epochs:
    return Epochs.from_records(await read_latest(settings.kafka_bootstrap, epochs_topic(settings.internal_topic_prefix)))


@dataclass
class NewEpoch:
    source: str
    epoch: Epoch


async def reset_epoch(settings: Settings, spec: Spec, source: str) -> NewEpoch:
    """Record the next epoch of ``source``, starting at the current end of every source topic.

    Refused while a worker of the pipeline runs: workers read the epochs as they start, and one
    running now would take the new positions for stale replays.
    """
    members = await group_members(settings.kafka_bootstrap, settings.app_id)
    if members:
        raise EpochRefused(f"{members} worker(s) of {settings.app_id!r} are running; stop them first (they read "
                           "the epochs as they start)")
    starts = await end_offsets(settings.kafka_bootstrap, source_topics(settings, spec))
    topic = await create_epochs_topic(settings)
    epochs = await read_epochs(settings)
    epoch = epochs.next_epoch(source, starts)
    epochs.add(source, epoch)
    await produce_one(settings.kafka_bootstrap, topic, source.encode(), Epochs.encode(epochs.by_source[source]))
    return NewEpoch(source, epoch)


def reset_epoch_sync(settings: Settings, spec: Spec, source: str) -> NewEpoch:
    return asyncio.run(reset_epoch(settings, spec, source))
