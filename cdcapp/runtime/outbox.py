"""Messages gathered per destination partition and sent as batch records.

A Kafka record on a stage or sink topic carries a JSON list of messages whose keys all belong to
its partition (``cdcapp.model.messages``). The outbox keeps one list per (topic, partition),
sends one record per list when asked, and splits a list whose record would come near Kafka's
1 MB request limit.
"""

from __future__ import annotations

from typing import Any

from cdcapp.model.messages import encode_batch

MAX_RECORD_BYTES = 900_000
#: a list this heavy is sent before the batch ends, so that a large fan-out streams in bounded memory
MAX_WEIGHT = 2_000


class Outbox:
    def __init__(self, producer: Any) -> None:
        self.producer = producer
        #: (topic, partition) -> [its messages, their weight]
        self.lists: dict[tuple[str, int], list[Any]] = {}
        self.records = 0

    async def add(self, topic: str, partition: int, message: Any, weight: int = 1) -> None:
        """``weight``: what the message holds (an info for 1,000 children weighs 1,000)."""
        destination = (topic, partition)
        held = self.lists.get(destination)
        if held is None:
            held = self.lists[destination] = [[], 0]
        held[0].append(message)
        held[1] += weight
        if held[1] >= MAX_WEIGHT:
            del self.lists[destination]
            await self._send(topic, partition, held[0])

    async def flush(self) -> None:
        lists, self.lists = self.lists, {}
        for (topic, partition), (messages, _) in lists.items():
            await self._send(topic, partition, messages)

    async def _send(self, topic: str, partition: int, messages: list[Any]) -> None:
        value = encode_batch(messages)
        if len(value) > MAX_RECORD_BYTES and len(messages) > 1:
            half = len(messages) // 2
            await self._send(topic, partition, messages[:half])
            await self._send(topic, partition, messages[half:])
            return
        await self.producer.send(topic, None, value, partition, None, None)
        self.records += 1
