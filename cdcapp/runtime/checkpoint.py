"""The checkpoint order: what must be durable before a source offset may be committed.

1. **Sink**: rows are inserted into ClickHouse, then their events are acked
   (``cdcapp.sink.flush.Sink``); an ack is what makes an offset committable.
2. **Changelogs**: table writes waiting in Faust's send buffer, the one being handed over
   included, reach the producer (``faust.buffer.ChangelogBuffer``).
3. **Producer**: everything handed to aiokafka - stage messages, sink rows, changelog writes - is
   acknowledged by Kafka; a send that Kafka refused for good fails the checkpoint
   (``faust.delivery``).
4. **Offsets**: only then are offsets committed. Faust's ``Consumer._commit_offsets`` calls the
   producer's ``flush`` (this function) right before it commits.

A crash anywhere before 4 replays from the previous commit, and every step is idempotent, so the
worst case is duplicates, never loss.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from faust.exceptions import ProducerSendError

from cdcapp.runtime.faust.delivery import DeliveryWatch


class Buffer(Protocol):
    async def flush(self) -> None: ...


async def flush_before_commit(changelogs: Buffer, flush_kafka: Callable[[], Awaitable[None]],
                              deliveries: DeliveryWatch) -> None:
    await changelogs.flush()
    await flush_kafka()
    if deliveries.failure is not None:
        raise ProducerSendError(
            f"a message was lost in sending, refusing to commit: {deliveries.failure!r}") from deliveries.failure
