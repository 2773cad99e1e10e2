"""Stage 2, the join agents: one agent per entity runs its ``EntityStage`` over its tables.

A batch of records (``batching.each_batch``) is decoded, its messages gathered per partition and
applied with ``apply_batch`` against that partition's tables (``tables.PartitionStore``); then the
table writes go to the changelogs, the outputs (messages to other stages, sink rows, the
expansion of every broadcast over its subscription entries) go out as batch records
(``outbox.Outbox``), and only then are the records acknowledged.
"""

from __future__ import annotations

import logging
import time

import faust

from cdcapp.join.apply import apply_batch, expand
from cdcapp.join.engine import EntityStage
from cdcapp.join.plan import plan
from cdcapp.model.messages import BadMessage, Message, decode_stage_batch, encode_batch, partition_of, source_of
from cdcapp.model.spec import Spec
from cdcapp.runtime.batching import each_batch
from cdcapp.runtime.dlq import send_dead_letter
from cdcapp.runtime.metrics import BATCH_EVENTS, EVENTS, STALE_CHANGES
from cdcapp.runtime import pending
from cdcapp.runtime.outbox import Outbox
from cdcapp.runtime.pending import PendingJoins
from cdcapp.runtime.tables import StageTables
from cdcapp.runtime.topics import Topics

log = logging.getLogger(__name__)

#: records per batch (a record holds up to 2,000 messages): enough to share per-batch costs, few
#: enough to bound memory and to answer a rebalance soon
MAX_EVENTS = 32
#: children per info message of a broadcast
CHUNK = 1000


def register(app: faust.App, spec: Spec, topics: Topics, partitions: int, linger_s: float) -> dict[str, StageTables]:
    tables = {}
    trackers = {}
    for entity, entity_plan in plan(spec).items():
        tables[entity] = StageTables(app, entity, partitions)
        stage = EntityStage(entity_plan)
        trackers[entity] = PendingJoins(stage, tables[entity], partitions)
        _register_stage(app, topics, stage, tables[entity], trackers[entity], partitions, linger_s)
    pending.register(app, trackers, topics.stage_names)
    return tables


def _register_stage(app: faust.App, topics: Topics, stage: EntityStage, tables: StageTables, waiting: PendingJoins,
                    partitions: int, linger_s: float) -> None:
    name = f"stage.{stage.entity}"

    def partition_for(key: str) -> int:
        return partition_of(key, partitions)

    batch_events = BATCH_EVENTS.labels(name)

    async def handle(events: list[faust.EventT]) -> None:
        batch_events.observe(len(events))
        by_partition: dict[int, list[tuple[faust.EventT, list[Message]]]] = {}
        for event in events:
            try:
                batch = decode_stage_batch(event.value)
            except BadMessage as exc:
                await send_dead_letter(topics.dlq, event.message, name, exc)
                continue
            by_partition.setdefault(event.message.partition, []).append((event, batch))
        outbox = Outbox(app.producer)
        for partition, records in by_partition.items():
            store = tables.store(partition)
            result = apply_batch(stage, store, [m for _, batch in records for m in batch])
            waiting.update(partition, result.waiting, time.time())
            for key, group, exc in result.failed:
                event = next(e for e, batch in records if any(m in group for m in batch))
                await send_dead_letter(topics.dlq, event.message, name, f"{type(exc).__name__}: {exc} (key {key})",
                                       value=encode_batch(group))
            for (kind, outcome), count in result.outcomes.items():
                EVENTS.labels(stage.entity, kind, outcome).inc(count)
            for key, pos, state_pos in result.stale:
                count_stale(stage.entity, key, pos, state_pos)
            for send in result.sends:
                await outbox.add(topics.stage_names[send.entity], partition_for(send.key), send.message)
            for row in result.rows:
                await outbox.add(topics.sink_name, partition_for(row.sink_key), row.encode())
            for broadcast in result.broadcasts:
                for send in expand(broadcast, store, partition_for, CHUNK):
                    await outbox.add(topics.stage_names[send.entity], partition_for(send.key), send.message,
                                     len(send.message["k"]))
        await tables.flush(app.producer)
        await outbox.flush()

    @app.agent(topics.stages[stage.entity], name=f"cdcapp.{name}")
    async def join(stream: faust.StreamT) -> None:
        await each_batch(stream, handle, MAX_EVENTS, linger_s)


def count_stale(entity: str, key: str, pos: int, state_pos: int) -> None:
    """Every dropped change is counted; one far below its row's position is also logged, because
    it is more likely a source whose positions restarted (a reset binlog, a reinstalled SQLite
    capture) than a replay, and then the row in ClickHouse is wrong until its next change."""
    rewound = pos < state_pos // 2
    STALE_CHANGES.labels(source_of(key), entity, "rewound" if rewound else "older").inc()
    if rewound:
        log.warning("change of %s %s at position %d dropped: its row is already at %d. If the source's "
                    "positions restarted, see docs/operations.md", entity, key, pos, state_pos)

