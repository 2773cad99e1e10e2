"""Drain Faust's changelog send buffer completely, the message being handed over included.

Table writes go to the changelog through this buffer (``send_soon``). Faust's own ``flush``
returns as soon as no message left the buffer for 0.1 s, with messages still in it; the consumer
then commits offsets, and on a rebalance hands the partition over, before those changelog writes
reach Kafka - the next owner recovers a table that lacks them. Its ``size`` also forgets the
message its sender task has taken off the queue and is still handing to aiokafka, so even an
"empty" buffer could be overtaken by the commit. Here ``size`` counts that message and ``flush``
waits until nothing is left.
"""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage


class ChangelogBuffer(ProducerBuffer):
    # Faust's 100 stalls every table writer long before Kafka is the limit.
    max_messages = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.in_flight = 0

    async def _send_pending(self, fut: FutureMessage) -> None:
        self.in_flight += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.in_flight -= 1

    @property
    def size(self) -> int:
        return super().size + self.in_flight

    async def flush(self) -> None:
        while self.size:
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                continue
