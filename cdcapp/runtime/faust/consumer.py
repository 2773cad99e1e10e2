"""cdcapp's Kafka consumer: Faust's aiokafka consumer with the corrections of ``acks``, ``fetch``
and ``seek``, and the app's own broker-side fetch wait."""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message

from cdcapp.runtime.faust import acks, fetch, seek

log = logging.getLogger(__name__)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        """Faust's consumer, with ``fetch_max_wait_ms`` from the app instead of Faust's fixed 1,500.

        aiokafka sends one fetch at a time per broker, leaving out the partitions whose fetched
        records are not yet consumed; the broker holds that fetch until the wait ends unless the
        partitions in it get records. Records produced meanwhile to a left-out partition - the
        pipeline's own stage topics, under load - then wait up to the whole 1,500 ms, at every hop.
        """
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka's consumer no longer has _fetch_max_wait_ms: "
                               "cdcapp.runtime.faust.consumer needs updating for this aiokafka version")
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = fetch.ReadOffsets(on_seek=lambda tp, offset: acks.take_back_credit(self, tp, offset))

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def ack(self, message: Message) -> bool:
        return acks.ack_with_credit_rule(self, message, faust_aiokafka.Consumer)

    async def _drain_messages(self, fetcher: Any) -> None:
        await fetch.drain_keeping_seeks(self, fetcher)

    async def seek_wait(self, partitions: Any) -> None:
        seeks, left_out = seek.seekable(self, partitions)
        if left_out:
            log.info("seek of %s left out: no offset, or no longer assigned (a recovery round a "
                     "rebalance overtook; the next round positions them)", left_out)
        await super().seek_wait(seeks)

    async def seek_to_committed(self) -> Any:
        committed = await super().seek_to_committed()
        uncommitted = seek.uncommitted_stream_partitions(self, committed)
        if uncommitted:
            await self._thread.seek_to_beginning(*uncommitted)
        return committed
