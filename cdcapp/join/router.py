"""Runs every entity stage of a spec over in-memory partitioned queues, with crashes.

The same stages, the same ``apply_batch`` and the same broadcast expansion that the Faust agents
run, wired without Kafka: a message sent to a stage goes to the queue of its key's partition, and
each partition is FIFO, as in Kafka. A step takes a random number of messages from the head of
one partition as a batch. A crash of a partition replays, in order, the batches since its last
commit, and either keeps their state and loses the outputs of the last one ("state saved, outputs
lost") or restores the state of the commit and keeps the outputs ("outputs sent, state lost").
Used by the property tests.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from cdcapp.join.apply import apply_batch, expand
from cdcapp.join.engine import EntityStage, State
from cdcapp.join.plan import plan
from cdcapp.model.messages import Message, SinkRow, partition_of
from cdcapp.model.spec import Spec

SEP = "\x00"


@dataclass
class MemoryStore:
    """A ``StageStore`` of one entity on dicts of JSON bytes, as the Faust tables hold them."""

    states: dict[str, bytes] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, None]] = field(default_factory=dict)

    def get(self, key: str) -> State | None:
        raw = self.states.get(key)
        return orjson.loads(raw) if raw is not None else None

    def put(self, key: str, state: State) -> None:
        self.states[key] = orjson.dumps(state)

    def subscribe(self, parent: str, child_entity: str, ref: str, child_key: str, on: bool) -> None:
        entry = SEP.join((child_entity, ref, child_key))
        if on:
            self.subscriptions.setdefault(parent, {})[entry] = None
        else:
            self.subscriptions.get(parent, {}).pop(entry, None)

    def children(self, parent: str) -> Iterator[tuple[str, str, str]]:
        for entry in list(self.subscriptions.get(parent, ())):
            child_entity, ref, child_key = entry.split(SEP)
            yield child_entity, ref, child_key

    def snapshot(self) -> tuple[dict[str, bytes], dict[str, dict[str, None]]]:
        return dict(self.states), {k: dict(v) for k, v in self.subscriptions.items()}


class LocalRouter:
    def __init__(self, spec: Spec, partitions: int = 4, rng: random.Random | None = None, max_batch: int = 1,
                 chunk: int = 1000) -> None:
        self.stages = {name: EntityStage(entity) for name, entity in plan(spec).items()}
        self.partitions = partitions
        self.rng = rng or random.Random(0)
        self.max_batch = max_batch
        self.chunk = chunk
        Queue = tuple[str, int]
        self.queues: dict[Queue, deque[Message]] = {}
        self.stores: dict[Queue, MemoryStore] = {}
        #: per partition: its store at the last commit, and the batches processed since
        self.committed: dict[Queue, tuple[Any, list[list[Message]]]] = {}
        self.sink: list[SinkRow] = []

    def send(self, entity: str, message: Message) -> None:
        key = message["k"][0] if isinstance(message["k"], list) else message["k"]
        self.queues.setdefault((entity, partition_of(key, self.partitions)), deque()).append(message)

    def busy(self) -> list[tuple[str, int]]:
        return [q for q, messages in self.queues.items() if messages]

    def step(self, lose_outputs: bool = False) -> bool:
        """Process a batch from the head of one random non-empty partition; False when all are empty.

        ``lose_outputs``: the worker crashes after saving the batch's state and before sending its
        outputs; the partition replays from its last commit.
        """
        ready = self.busy()
        if not ready:
            return False
        queue = self.rng.choice(ready)
        messages = self.queues[queue]
        batch = [messages.popleft() for _ in range(min(len(messages), self.rng.randint(1, self.max_batch)))]
        store = self.stores.setdefault(queue, MemoryStore())
        self.committed.setdefault(queue, (store.snapshot(), []))[1].append(batch)
        result = apply_batch(self.stages[queue[0]], store, batch)
        if lose_outputs:
            self._replay(queue)
        else:
            self._dispatch(store, result)
        return True

    def commit(self, queue: tuple[str, int]) -> None:
        """The partition's offsets are committed: what it processed is never replayed."""
        self.committed.pop(queue, None)

    def lose_state(self, queue: tuple[str, int]) -> None:
        """The worker crashes after sending the outputs of the batches since the partition's last
        commit but before their state reached the changelog: state of the commit, inputs replayed."""
        if queue in self.committed:
            store = self.stores[queue]
            store.states, store.subscriptions = self.committed[queue][0]
            self._replay(queue)

    def _replay(self, queue: tuple[str, int]) -> None:
        _, since = self.committed.pop(queue)
        self.queues[queue].extendleft(reversed([m for batch in since for m in batch]))

    def run(self) -> None:
        while self.step():
            pass

    def _dispatch(self, store: MemoryStore, result: Any) -> None:
        for out in result.sends:
            self.send(out.entity, out.message)
        self.sink.extend(result.rows)
        for broadcast in result.broadcasts:
            for out in expand(broadcast, store, lambda key: partition_of(key, self.partitions), self.chunk):
                self.send(out.entity, out.message)
