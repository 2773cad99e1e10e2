"""cdcapp's Kafka producer: Faust's aiokafka producer with the corrections of ``buffer`` and
``delivery``, flushing in the order of ``cdcapp.runtime.checkpoint``."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from cdcapp.runtime import checkpoint
from cdcapp.runtime.faust.buffer import ChangelogBuffer
from cdcapp.runtime.faust.delivery import DeliveryWatch


class Producer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = ChangelogBuffer(loop=self.loop, beacon=self.beacon)
        self.buffer.app = self.app
        self.deliveries = DeliveryWatch()

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        delivery = await super().send(*args, **kwargs)
        self.deliveries.watch(delivery)
        return delivery

    async def send_records(self, topic: str, partition: int, records: list[tuple[bytes, bytes | None]]) -> Any:
        """Many records for one partition as few batches: aiokafka's batch builder takes a record
        for a fraction of what a ``send`` costs. Returns the delivery of the last batch, whose
        metadata has the batch's first offset; every batch's delivery is watched like a send's."""
        kafka = self._ensure_producer()
        delivery = None
        builder = kafka.create_batch()
        for key, value in records:
            if builder.append(key=key, value=value, timestamp=None) is None:
                delivery = await kafka.send_batch(builder, topic, partition=partition)
                self.deliveries.watch(delivery)
                builder = kafka.create_batch()
                builder.append(key=key, value=value, timestamp=None)
        if builder.record_count():
            delivery = await kafka.send_batch(builder, topic, partition=partition)
            self.deliveries.watch(delivery)
        return delivery

    async def flush(self) -> None:
        await checkpoint.flush_before_commit(self.buffer, self._flush_kafka, self.deliveries)

    async def _flush_kafka(self) -> None:
        if self._producer is not None:
            await self._producer.flush()
        for transaction_producer in self._transaction_producers.values():
            await transaction_producer.flush()
