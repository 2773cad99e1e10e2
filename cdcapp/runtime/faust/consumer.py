"""cdcapp's Kafka consumer: Faust's aiokafka consumer with the corrections of ``acks``, ``fetch``
and ``seek``."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message

from cdcapp.runtime.faust import acks, fetch, seek


class Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = fetch.ReadOffsets()

    def ack(self, message: Message) -> bool:
        return acks.ack_with_credit_rule(self, message, faust_aiokafka.Consumer)

    async def _drain_messages(self, fetcher: Any) -> None:
        await fetch.drain_keeping_seeks(self, fetcher)

    async def seek_to_committed(self) -> Any:
        committed = await super().seek_to_committed()
        uncommitted = seek.uncommitted_stream_partitions(self, committed)
        if uncommitted:
            await self._thread.seek_to_beginning(*uncommitted)
        return committed
