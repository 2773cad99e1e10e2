"""Rows waiting for a missing join side: how many per entity, and how long the oldest has waited.

A live row whose reference points at a parent without a view (``EntityStage.waiting``) has no
fact row and gives its children nothing. For a moment that is normal (a child's change overtook
its parent's); when it lasts, a join is stuck: a parent that never came, or was deleted while its
children stayed. The stage agents report every key whose state a batch changed; the state a
worker holds already when it takes a partition over is scanned once, a chunk at a time between
other work, and keys reported meanwhile keep what the agents said. Rows the scan finds count as
waiting from the scan on, so the oldest age is a lower bound after a restart or a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from itertools import islice

import faust
import orjson

from cdcapp.join.engine import EntityStage
from cdcapp.model.messages import partition_of
from cdcapp.runtime.metrics import PENDING_JOIN_OLDEST, PENDING_JOINS
from cdcapp.runtime.tables import StageTables

log = logging.getLogger(__name__)

#: states decoded between two yields to the event loop
SCAN_CHUNK = 500
REPORT_EVERY_S = 2.0


class PendingJoins:
    """One entity's waiting rows in the partitions this worker owns: key -> since (epoch s)."""

    def __init__(self, stage: EntityStage, tables: StageTables, partitions: int) -> None:
        self.stage, self.tables, self.partitions = stage, tables, partitions
        self.since: dict[int, dict[str, float]] = {}
        #: partition -> keys the agent reported while the partition's scan runs
        self.touched: dict[int, set[str]] = {}
        self.scanned: set[int] = set()

    def update(self, partition: int, waiting: dict[str, bool], now: float) -> None:
        held = self.since.setdefault(partition, {})
        touched = self.touched.get(partition)
        for key, is_waiting in waiting.items():
            if touched is not None:
                touched.add(key)
            if is_waiting:
                held.setdefault(key, now)
            else:
                held.pop(key, None)

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.since.pop(partition, None)
            self.scanned.discard(partition)

    async def follow(self, assigned: set[int], still_assigned: Callable[[int], bool]) -> None:
        """Forget the partitions given away; scan the ones taken over."""
        self.forget((self.since.keys() | self.scanned) - assigned)
        for partition in sorted(assigned - self.scanned):
            self.scanned.add(partition)
            try:
                await self._scan(partition, still_assigned)
            except Exception as exc:  # noqa: BLE001 - a store closed by a rebalance; scanned again when held again
                self.scanned.discard(partition)
                log.debug("pending joins of %s[%d]: scan stopped: %s", self.stage.entity, partition, exc)
            finally:
                self.touched.pop(partition, None)

    async def _scan(self, partition: int, still_assigned: Callable[[int], bool]) -> None:
        touched = self.touched.setdefault(partition, set())
        found: dict[str, float] = {}
        now = time.time()
        items = self.tables.state.items(partition)
        while True:
            chunk = list(islice(items, SCAN_CHUNK))
            for raw_key, raw in chunk:
                key = raw_key.decode()
                if partition_of(key, self.partitions) == partition and self.stage.waiting(orjson.loads(raw)):
                    found[key] = now
            if len(chunk) < SCAN_CHUNK:
                break
            await asyncio.sleep(0)
            if not still_assigned(partition):
                raise RuntimeError("partition given away")
        held = self.since.setdefault(partition, {})
        for key, since in found.items():
            if key not in touched:
                held.setdefault(key, since)

    def report(self, now: float) -> None:
        oldest = min((since for held in self.since.values() for since in held.values()), default=None)
        PENDING_JOINS.labels(self.stage.entity).set(sum(len(held) for held in self.since.values()))
        PENDING_JOIN_OLDEST.labels(self.stage.entity).set(0.0 if oldest is None else max(0.0, now - oldest))


def register(app: faust.App, trackers: dict[str, PendingJoins], stage_topic: str) -> None:
    """Every two seconds, once no rebalance is under way: follow the assignment, set the gauges.
    A revoked partition is forgotten at once: taken back later, it may hold what another worker
    changed meanwhile, so it is scanned again."""

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: faust.App, revoked: set, **kwargs: object) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == stage_topic}
        for tracker in trackers.values():
            tracker.forget(partitions)

    @app.timer(interval=REPORT_EVERY_S, name="cdcapp.pending-joins")
    async def pending_joins() -> None:
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == stage_topic}
        for tracker in trackers.values():
            await tracker.follow(assigned, lambda p: any(
                tp.topic == stage_topic and tp.partition == p for tp in app.consumer.assignment()))
            tracker.report(time.time())
