"""Runs every entity stage of a spec over in-memory partitioned queues.

The same stages and the same ``apply`` that the Faust agents run, wired without Kafka: a message sent to a stage goes
to the queue of the partition its key hashes to, and each partition is FIFO, as in Kafka. Used by
the property tests (random interleavings); the Faust app wires the stages to real topics.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from typing import Any, Iterable

from cdcapp.join.apply import BytesStageStore, apply
from cdcapp.join.engine import EntityStage, Send
from cdcapp.model.messages import SinkRow
from cdcapp.model.spec import Spec


class LocalRouter:
    def __init__(self, spec: Spec, partitions: int = 4, rng: random.Random | None = None) -> None:
        self.stages = {name: EntityStage(spec, name) for name in spec.entities}
        self.partitions = partitions
        self.rng = rng or random.Random(0)
        self.queues: dict[tuple[str, int], deque[tuple[str, str, dict[str, Any]]]] = {}
        self.stores = {name: BytesStageStore({}, {}) for name in spec.entities}
        self.sink: list[SinkRow] = []

    def send(self, entity: str, key: str, message: dict[str, Any]) -> None:
        partition = zlib.crc32(key.encode()) % self.partitions
        self.queues.setdefault((entity, partition), deque()).append((entity, key, message))

    def step(self) -> bool:
        """Process the head of one random non-empty partition; False when all are empty."""
        ready = [q for q in self.queues.values() if q]
        if not ready:
            return False
        self._process(*self.rng.choice(ready).popleft())
        return True

    def run(self) -> None:
        while self.step():
            pass

    def _process(self, entity: str, key: str, message: dict[str, Any]) -> None:
        self._dispatch(apply(self.stages[entity], self.stores[entity], key, message).outputs)

    def _dispatch(self, outputs: Iterable[Send | SinkRow]) -> None:
        for out in outputs:
            if isinstance(out, SinkRow):
                self.sink.append(out)
            else:
                self.send(out.entity, out.key, out.message)
