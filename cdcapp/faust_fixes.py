"""Corrections to faust-streaming 0.15 that the delivery guarantees depend on.

Each is small, applied once at import by ``cdcapp.app``, and says what it fixes and why.
"""

from __future__ import annotations

import asyncio

from typing import Any

from faust.transport.consumer import Consumer
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


_original_wait_next_records = Consumer._wait_next_records


async def _wait_next_records_of_one_generation(self: Consumer, timeout: float) -> Any:
    """Drop a fetch that a rebalance overtook.

    The consumer thread hands records to the event loop with a few hops in between; if a
    rebalance completes (new generation, partitions seeked back to their committed offsets)
    meanwhile, Faust labels the records fetched *before* it with the new generation and delivers
    them. Their offsets are ahead of the committed position, so Faust records the offsets in
    between as a gap (treated as done), moves its read offset past them and then drops the
    re-fetched messages as already read: a silent loss, seen in the two-worker test. Every
    rebalance ends with Faust seeking all assigned partitions to their committed offsets, so
    records dropped here are fetched again.
    """
    generation = self.app.consumer_generation_id
    records, active_partitions = await _original_wait_next_records(self, timeout)
    if records and self.app.consumer_generation_id != generation:
        return {}, active_partitions
    return records, active_partitions


def apply() -> None:
    Consumer._wait_next_records = _wait_next_records_of_one_generation  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_until_empty  # type: ignore[method-assign]
    # The buffer stalls table writers at this size (Faust: 100, which throttles every stage).
    ProducerBuffer.max_messages = 10_000
