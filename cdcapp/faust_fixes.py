"""Corrections to faust-streaming 0.15 that the delivery guarantees depend on.

Each is small, applied once at import by ``cdcapp.app``, and says what it fixes and why.
"""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer


async def _flush_until_empty(self: ProducerBuffer) -> None:
    """Drain the send_soon buffer completely.

    Table writes go to the changelog through this buffer. Faust's own ``flush`` returns as soon as
    no message left the buffer for 0.1 s, with messages still in it; the consumer then commits
    offsets, and on a rebalance hands the partition over, before those changelog writes reach
    Kafka - the next owner recovers a table that lacks them. Waiting until the buffer is empty
    restores the order changelog -> commit/hand-over.
    """
    while self.size:
        if self.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            continue


def apply() -> None:
    ProducerBuffer.flush = _flush_until_empty  # type: ignore[method-assign]
    # The buffer stalls table writers at this size (Faust: 100, which throttles every stage).
    ProducerBuffer.max_messages = 10_000
