"""The join agent: one agent reads every Debezium topic and the stage topic, and runs each
entity's ``EntityStage`` over that entity's tables.

A batch of records (``batching.each_batch``) is decoded - source records into ``chg`` messages
(``runtime.ingest``), stage records into the messages they carry - and its messages gathered per
partition and entity (``e``) and applied with ``apply_batch`` against that partition's tables
(``tables.PartitionStore``). The messages this emits for other keys (subscriptions, the
expansion of every broadcast over its subscription entries) are applied in further rounds of the
same batch when this worker holds their partitions, and sent otherwise. Then the table writes go
to the changelogs, the outputs that leave the worker (sink rows, messages for other workers) go
out as batch records (``outbox.Outbox``), and only then are the records acknowledged.

A change is joined in the batch that reads it when this worker holds its key's stage partition
(always, with one worker), and is sent to the stage topic for the worker that does otherwise: a
hop and a record less per change (docs/performance.md). A key's changes must still reach its
state in order - a change's row is completed from the state (the values PostgreSQL leaves out of
an update), and a streamed change overrides a snapshot row whatever its position - so after a
rebalance a partition joins source changes directly only once its older stage records, which
may hold the same keys' earlier changes, are handled, and a key this worker sent through the
stage topic only once that change is back (``Handover``). Messages between stages follow the
same rule, for the same reason: a message sent through the stage topic must not be overtaken by
a later one of the same sender applied here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import faust

from cdcapp.join.apply import apply_batch, expand
from cdcapp.join.engine import EntityStage
from cdcapp.join.plan import plan
from cdcapp.model.messages import BadMessage, Message, decode_stage_batch, encode_batch, partition_of, source_of
from cdcapp.model.spec import Spec
from cdcapp.runtime.batching import each_batch
from cdcapp.runtime.dlq import send_dead_letter
from cdcapp.runtime.ingest import Ingest
from cdcapp.runtime.metrics import BATCH_EVENTS, BATCH_SECONDS, EVENTS, LOCAL_MESSAGES, STALE_CHANGES
from cdcapp.runtime import pending
from cdcapp.runtime.outbox import Outbox
from cdcapp.runtime.pending import PendingJoins
from cdcapp.runtime.tables import StageTables
from cdcapp.runtime.topics import Topics

log = logging.getLogger(__name__)

#: records per batch (a stage record holds up to 2,000 messages, a source event a run of up to
#: ``broker_max_poll_records`` records): enough to share per-batch costs, few enough to bound
#: memory and to answer a rebalance soon
MAX_EVENTS = 32
#: children per info message of a broadcast
CHUNK = 1000
#: messages between stages (an info counted per child) that one batch applies itself rather than
#: sending them through the stage topic: bounds a batch's time and memory under a large fan-out
LOCAL_MESSAGES_PER_BATCH = 20_000
#: a batch carrying more messages than this is a backlog being worked off: its messages between
#: stages go through the stage topic, where they wait with the others and are applied in later,
#: larger groups per key (an order's changes reach its items once, not once per batch)
BACKLOG_MESSAGES = 1_000
#: how long a batch waits for the end offsets of the partitions a rebalance gave it, and how long
#: after a failure it asks again; meanwhile their changes go through the stage topic
END_OFFSETS_TIMEOUT_S = 5.0


class Handover:
    """Which source changes (and messages between stages) this worker applies straight away, and
    which go through the stage topic.

    Before a rebalance, the changes of a partition this worker did not hold went to the stage
    topic; afterwards such a change may still wait there unread while this worker reads the
    key's next change from its source. So after every rebalance a held partition joins changes
    here only once the agent has handled its stage records up to the partition's end offset at
    that time (the previous owners flushed their sends before they let go). Until then its
    changes go through the stage topic too, behind the older ones, and a key this worker sent
    that way keeps going that way until the last change it sent is back. Only this worker sends
    a key's changes (it holds the key's source partition); its sends carry a token of the current
    assignment (``via``), so that the previous owners' do not count as its own. A message between
    stages is tracked by the keys it is for (an ``info`` names several).
    """

    def __init__(self, app: faust.App, stage_topic: str) -> None:
        self.app, self.stage_topic = app, stage_topic
        #: partition -> its end offset when first looked at after the rebalance
        self.ends: dict[int, int] = {}
        self.ready: set[int] = set()
        #: partition -> the highest offset of it a batch handled (while held)
        self.handled: dict[int, int] = {}
        #: key -> its changes this worker sent to a partition it holds, not yet back
        self.in_flight: dict[str, int] = {}
        #: when to ask for end offsets again after a failure (time.monotonic)
        self.retry_at = 0.0
        self.token = ""
        self.rebalanced(set())

    def rebalanced(self, revoked: set[int]) -> None:
        # The previous assignment's sends are all below the end offsets the next one looks up.
        self.ends.clear()
        self.ready.clear()
        self.in_flight.clear()
        self.token = uuid.uuid4().hex[:12]
        for partition in revoked:
            self.handled.pop(partition, None)

    async def held(self) -> set[int]:
        """The stage partitions held, when a batch starts (a rebalance waits for the batch's
        acks: they stay held until it ends); the caught-up ones among them are ``ready``."""
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic == self.stage_topic]
        unknown = [tp for tp in tps if tp.partition not in self.ends]
        if unknown and time.monotonic() >= self.retry_at:
            try:
                ends = await asyncio.wait_for(consumer.highwaters(*unknown), END_OFFSETS_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - the broker away: send through the stage topic meanwhile
                log.warning("end offsets of %s not known (%s): their changes go through the stage topic for now",
                            unknown, exc)
                self.retry_at = time.monotonic() + END_OFFSETS_TIMEOUT_S
                ends = {}
            for tp, end in ends.items():
                committed = consumer._committed_offset.get(tp)
                # Records below the committed offset were handled, by this worker or another.
                self.ends[tp.partition] = end if committed is None or committed < end else 0
        for tp in tps:
            partition = tp.partition
            if partition not in self.ready and partition in self.ends \
                    and self.handled.get(partition, -1) >= self.ends[partition] - 1:
                self.ready.add(partition)
        return {tp.partition for tp in tps}

    def joins_here(self, message: Message, partition: int, held: set[int], room: bool = True) -> bool:
        """Whether a message for ``partition`` - a source change, or a stage's message to another
        key - is applied in this batch; if not, it is to be sent. ``room``: whether the batch may
        take more (if not, it is sent, and tracked like any other send)."""
        if partition not in held:
            return False
        keys = _receivers(message)
        in_flight = self.in_flight
        if room and partition in self.ready and not any(key in in_flight for key in keys):
            return True
        for key in keys:
            in_flight[key] = in_flight.get(key, 0) + 1
        message["via"] = self.token
        return False

    def handle(self, partition: int, offset: int, messages: list[Message]) -> None:
        """A stage record of ``partition`` at ``offset`` is being handled."""
        if offset > self.handled.get(partition, -1):
            self.handled[partition] = offset
        if self.in_flight:
            in_flight, token = self.in_flight, self.token
            for message in messages:
                if message.__class__ is dict and message.get("via") == token:
                    for key in _receivers(message):
                        count = in_flight.get(key, 0)
                        if count > 1:
                            in_flight[key] = count - 1
                        else:
                            in_flight.pop(key, None)


def _receivers(message: Message) -> tuple[str, ...] | list[str]:
    """The keys a stage message is for: one, or the children an ``info`` names."""
    keys = message["k"]
    return (keys,) if keys.__class__ is str else keys


def register(app: faust.App, spec: Spec, topics: Topics, partitions: int, linger_s: float,
             ingest: Ingest) -> dict[str, StageTables]:
    tables = {}
    stages = {}
    trackers = {}
    for entity, entity_plan in plan(spec).items():
        tables[entity] = StageTables(app, entity, partitions)
        stages[entity] = EntityStage(entity_plan)
        trackers[entity] = PendingJoins(stages[entity], tables[entity], partitions)
    _register(app, topics, ingest, stages, tables, trackers, partitions, linger_s)
    pending.register(app, trackers, topics.stage_name)
    return tables


def _register(app: faust.App, topics: Topics, ingest: Ingest, stages: dict[str, EntityStage],
              tables: dict[str, StageTables], trackers: dict[str, PendingJoins], partitions: int,
              linger_s: float) -> None:
    def partition_for(key: str) -> int:
        return partition_of(key, partitions)

    stage_name = topics.stage_name
    batch_events = BATCH_EVENTS.labels("stage")
    handover = Handover(app, stage_name)

    @app.on_partitions_revoked.connect
    async def revoked(sender: faust.App, revoked: set, **kwargs: object) -> None:
        handover.rebalanced({tp.partition for tp in revoked if tp.topic == stage_name})

    @app.on_partitions_assigned.connect
    async def assigned(sender: faust.App, assigned: set, **kwargs: object) -> None:
        handover.rebalanced(set())

    async def handle(events: list[faust.EventT]) -> None:
        batch_events.observe(len(events))
        started = time.perf_counter()
        held = await handover.held()
        outbox = Outbox(app.producer)
        # partition -> entity -> the records' messages for it, in order
        gathered: dict[int, dict[str, list[Message]]] = {}
        received: dict[int, list[tuple[faust.EventT, list[Message]]]] = {}
        for event in events:
            if event.message.topic != stage_name:
                joined_here: dict[int, list[Message]] = {}
                for message in await ingest.messages(event):
                    partition = partition_for(message["k"])
                    if handover.joins_here(message, partition, held):
                        joined_here.setdefault(partition, []).append(message)
                    else:
                        await outbox.add(stage_name, partition, message)
                for partition, batch in joined_here.items():
                    await gather(event, partition, batch, gathered, received)
                continue
            try:
                batch = decode_stage_batch(event.value)
            except BadMessage as exc:
                handover.handle(event.message.partition, event.message.offset, [])
                await send_dead_letter(topics.dlq, event.message, "stage", exc)
                continue
            handover.handle(event.message.partition, event.message.offset, batch)
            await gather(event, event.message.partition, batch, gathered, received)
        # Messages between stages whose partitions this worker holds are applied in this batch, in
        # rounds (a sub, its info back, the fact row), instead of a round trip through the stage
        # topic each; at most LOCAL_MESSAGES_PER_BATCH of them, so that a broadcast to many
        # children streams, and none in a backlog.
        carried = sum(len(batch) for per_entity in gathered.values() for batch in per_entity.values())
        room = allowed = LOCAL_MESSAGES_PER_BATCH if carried <= BACKLOG_MESSAGES else 0
        local: dict[int, dict[str, list[Message]]] = {}

        async def route(message: Message, partition: int, weight: int) -> None:
            nonlocal room
            if handover.joins_here(message, partition, held, room >= weight):
                room -= weight
                local.setdefault(partition, {}).setdefault(message["e"], []).append(message)
            else:
                await outbox.add(stage_name, partition, message, weight)

        while gathered:
            local = {}
            for partition, per_entity in gathered.items():
                for entity, batch in per_entity.items():
                    await _apply(entity, partition, batch, received.get(partition, []), outbox, route)
            gathered = local
        LOCAL_MESSAGES.inc(allowed - room)
        for entity_tables in tables.values():
            await entity_tables.flush(app.producer)
        await outbox.flush()
        BATCH_SECONDS.observe(time.perf_counter() - started)

    async def gather(event: faust.EventT, partition: int, batch: list[Message],
                     gathered: dict[int, dict[str, list[Message]]],
                     received: dict[int, list[tuple[faust.EventT, list[Message]]]]) -> None:
        received.setdefault(partition, []).append((event, batch))
        per_entity = gathered.setdefault(partition, {})
        strays = []
        for message in batch:
            entity = message.get("e") if message.__class__ is dict else None
            messages = per_entity.get(entity)
            if messages is None:
                if entity not in stages:
                    strays.append(message)
                    continue
                messages = per_entity[entity] = []
            messages.append(message)
        if strays:
            await send_dead_letter(topics.dlq, event.message, "stage", "stage messages for no entity of the "
                                   f"spec ({', '.join(sorted(stages))})", value=encode_batch(strays))

    async def _apply(entity: str, partition: int, batch: list[Message],
                     records: list[tuple[faust.EventT, list[Message]]], outbox: Outbox,
                     route: Callable[[Message, int, int], Awaitable[None]]) -> None:
        stage, store = stages[entity], tables[entity].store(partition)
        result = apply_batch(stage, store, batch)
        trackers[entity].update(partition, result.waiting, time.time())
        for key, group, exc in result.failed:
            event = next((e for e, messages in records if any(m is group[0] for m in messages)), None)
            where = event.message if event is not None else None
            if where is None or where.topic != stage_name:
                # Joined straight from its source record, or sent by a stage in this batch: the
                # letter holds stage messages, whose place is the key's stage partition.
                where = SimpleNamespace(topic=stage_name, partition=partition, offset=None, key=key.encode(),
                                        value=None, headers=getattr(where, "headers", None))
            await send_dead_letter(topics.dlq, where, f"stage.{entity}",
                                   f"{type(exc).__name__}: {exc} (key {key})", value=encode_batch(group))
        for (kind, outcome), count in result.outcomes.items():
            EVENTS.labels(entity, kind, outcome).inc(count)
        for key, pos, state_pos in result.stale:
            count_stale(entity, key, pos, state_pos)
        for send in result.sends:
            send.message["e"] = send.entity
            await route(send.message, partition_for(send.key), 1)
        for row in result.rows:
            await outbox.add(topics.sink_name, partition_for(row.sink_key), row.encode())
        for broadcast in result.broadcasts:
            for send in expand(broadcast, store, partition_for, CHUNK):
                send.message["e"] = send.entity
                await route(send.message, partition_for(send.key), len(send.message["k"]))

    @app.agent(topics.stage_input, name="cdcapp.stage")
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

