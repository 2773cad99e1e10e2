"""The outbox sends one record per destination partition, early when a list gets heavy, and split
when a record would come near Kafka's request limit."""

from __future__ import annotations

from typing import Any

import orjson

from cdcapp.runtime import outbox as outbox_module
from cdcapp.runtime.outbox import Outbox


class Producer:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, list[Any]]] = []

    async def send(self, topic: str, key: Any, value: bytes, partition: int, timestamp: Any, headers: Any) -> None:
        self.records.append((topic, partition, orjson.loads(value)))


async def test_one_record_per_partition_and_heavy_lists_go_early() -> None:
    producer = Producer()
    outbox = Outbox(producer)
    await outbox.add("t", 0, "a")
    await outbox.add("t", 1, "b")
    await outbox.add("t", 0, {"k": list(range(1999))}, weight=1999)
    assert [(t, p) for t, p, _ in producer.records] == [("t", 0)], "weight 2,000 reached: sent at once"
    await outbox.add("t", 0, "c")
    await outbox.flush()
    assert sorted((p, len(batch)) for _, p, batch in producer.records) == [(0, 1), (0, 2), (1, 1)]


async def test_a_record_near_the_request_limit_is_split(monkeypatch: Any) -> None:
    monkeypatch.setattr(outbox_module, "MAX_RECORD_BYTES", 100)
    producer = Producer()
    outbox = Outbox(producer)
    for i in range(10):
        await outbox.add("t", 0, "x" * 30 + str(i))
    await outbox.flush()
    assert len(producer.records) > 1 and all(len(orjson.dumps(batch)) <= 100 for *_, batch in producer.records)
    assert [m for *_, batch in producer.records for m in batch] == ["x" * 30 + str(i) for i in range(10)]
