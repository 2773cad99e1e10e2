"""Corrections to faust-streaming 0.15 that the delivery guarantees depend on.

Each is small, applied once at import by ``cdcapp.app``, and says what it fixes and why.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging

from typing import Any

from faust.exceptions import ProducerSendError
from faust.transport.consumer import CONSUMER_FETCHING, Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import Producer as KafkaProducer
from faust.transport.drivers.aiokafka import ensure_aiokafka_TP
from faust.transport.producer import ProducerBuffer
from faust.types import Message
from faust.types.tuples import ack_lock

from cdcapp.metrics import STALE_DELIVERIES

log = logging.getLogger(__name__)


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


_original_ack = Consumer.ack


def _ack_only_what_was_processed(self: Consumer, message: Message) -> bool:
    """Give commit credit only to a message a stream took up in the current generation.

    Faust's streams *skip* a message that reaches them while flow control is suspended (during a
    rebalance) or that was fetched in an older generation, and then ack it as if processed. The
    consumer counts that ack towards the next commit, so once the offsets below it are acked the
    commit moves past a change nobody processed: the rebalance loss of the two-worker test.
    Skipped messages are never ``tracked`` (streams track a message when they take it up), so
    such an ack, and any ack of an older generation's message, is recorded without credit. Every
    rebalance ends with a seek to the committed offsets, so these messages are read again.
    """
    if not self.app.topics.acks_enabled_for(message.topic) or (
        message.tracked and message.generation_id == self.app.consumer_generation_id
    ):
        return _original_ack(self, message)
    with ack_lock:
        if message.acked:
            return False
        message.acked = True
        self._unacked_messages.discard(message)
    STALE_DELIVERIES.labels("ack_without_credit").inc()
    return False


class ReadOffsets(dict):
    """Faust's per-partition read offsets, plus a serial number of the last seek of each partition.

    Every writer but the fetch loop is a seek (a rebalance's seek to the committed offsets, the
    table recovery's seek of changelogs, a revocation), so every write except ``delivered``
    takes a new serial: the fetch loop can then tell that a seek overtook the records it holds.
    Written from the consumer thread too (``_seek_wait``); ``next()`` on a count is atomic.
    """

    _serials = itertools.count(1)

    def __init__(self) -> None:
        super().__init__()
        self.serial: dict[Any, int] = {}

    def __missing__(self, tp: Any) -> None:
        return None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        self.serial[tp] = next(self._serials)
        super().__setitem__(tp, offset)

    def __delitem__(self, tp: Any) -> None:
        self.serial[tp] = next(self._serials)
        super().__delitem__(tp)

    def pop(self, tp: Any, *default: Any) -> Any:
        self.serial[tp] = next(self._serials)
        return super().pop(tp, *default)

    def update(self, offsets: Any = (), **kwargs: Any) -> None:
        for tp, offset in dict(offsets, **kwargs).items():
            self[tp] = offset

    def delivered(self, tp: Any, offset: int) -> None:
        super().__setitem__(tp, offset)


_original_consumer_init = Consumer.__init__


def _consumer_init_with_seek_serials(self: Consumer, *args: Any, **kwargs: Any) -> None:
    _original_consumer_init(self, *args, **kwargs)
    self._read_offset = ReadOffsets()


async def _drain_messages_keeping_seeks(self: Consumer, fetcher: Any) -> None:
    """Faust's fetch loop, made to respect seeks that happen while it holds records.

    A fetch, and the delivery of each record (an await that can block for a whole rebalance on a
    full buffer or on suspended flow), can span a seek: the rebalance's seek of every partition
    to its committed offset, or the recovery's seek of a changelog. Faust then delivers records
    fetched before the seek, records their offsets as read (ahead of the seek), counts the
    offsets in between as a gap (done), and drops the re-fetched records below as already read:
    changes lost with their offsets committed - the two-worker rebalance loss. Here records of a
    partition seeked since its fetch began are not delivered, and the partition is seeked again
    to where the seek put it (nothing was delivered since), which is correct whether the records
    came from before the seek or after it.
    """
    read_offsets: ReadOffsets = self._read_offset
    acks_enabled_for = self.app.topics.acks_enabled_for
    delivered_since_yield = 0

    def stopping() -> bool:
        return self._stopped.is_set() or fetcher._stopped.is_set()

    def seeked_since_fetch(tp: Any) -> bool:
        return read_offsets.serial.get(tp) != serial_at_fetch.get(tp)

    try:
        while not stopping():
            self.diag.set_flag(CONSUMER_FETCHING)
            serial_at_fetch: dict[Any, int] = dict(read_offsets.serial)
            overtaken: set[Any] = set()
            batch = self.getmany(timeout=1.0)
            await self.sleep(0)  # getmany can return at once many times in a row
            if self.should_stop:
                continue
            async for tp, message in batch:
                delivered_since_yield += 1
                if delivered_since_yield > 100:
                    await asyncio.sleep(0)
                    delivered_since_yield = 0
                if seeked_since_fetch(tp):
                    overtaken.add(tp)
                    continue
                offset = message.offset
                read = read_offsets[tp]
                if read is not None and offset < read:
                    continue  # re-fetched below the read offset: already delivered
                if read and offset - read > 1 and acks_enabled_for(message.topic):
                    # Offsets absent from a partition (compaction, transaction markers) are
                    # counted as done, or the commit would wait for them forever.
                    await self._add_gap(tp, read + 1, offset)
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                if seeked_since_fetch(tp):
                    overtaken.add(tp)
                else:
                    read_offsets.delivered(tp, offset)
            self.diag.unset_flag(CONSUMER_FETCHING)
            await _seek_again(self, overtaken)
    except self.consumer_stopped_errors:
        if not self.app.should_stop:
            raise
        log.info("Broker stopped the consumer; shutting down")
    except asyncio.CancelledError:
        if not self.app.should_stop:
            raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


async def _seek_again(self: Consumer, partitions: set[Any]) -> None:
    """Put partitions whose records were withheld back where their last seek put them."""
    assigned = self.assignment()
    for tp in partitions & assigned:
        STALE_DELIVERIES.labels("seeked_again").inc()
        # Faust keeps no read offset for 0 or for "no committed offset": both mean the start
        # (below the log start, the consumer's reset policy "earliest" applies).
        await self.seek(tp, self._read_offset[tp] or 0)


_original_send = KafkaProducer.send
_original_producer_flush = KafkaProducer.flush


async def _send_watching_delivery(self: KafkaProducer, *args: Any, **kwargs: Any) -> Any:
    """Remember a send that Kafka finally refused, for ``_flush_then_refuse_to_commit``.

    Faust and cdcapp hand messages to aiokafka and keep no eye on the delivery future; when
    aiokafka gives up on one (after ``producer_request_timeout`` of retries), nothing noticed it.
    """
    delivery = await _original_send(self, *args, **kwargs)
    delivery.add_done_callback(functools.partial(_note_failed_delivery, self))
    return delivery


def _note_failed_delivery(producer: KafkaProducer, delivery: asyncio.Future) -> None:
    if delivery.cancelled() or delivery.exception() is None:
        return
    if getattr(producer, "failed_delivery", None) is None:
        log.error("Kafka refused a message for good: %r; no offset will be committed", delivery.exception())
        producer.failed_delivery = delivery.exception()  # type: ignore[attr-defined]


async def _flush_then_refuse_to_commit(self: KafkaProducer) -> None:
    """The consumer flushes the producer before each commit; fail that commit after a lost send.

    Committing would mark as processed an event whose output never reached Kafka. Raising here
    crashes the worker instead, and its successor replays from the last good commit.
    """
    await _original_producer_flush(self)
    failure = getattr(self, "failed_delivery", None)
    if failure is not None:
        raise ProducerSendError(f"a message was lost in sending, refusing to commit: {failure!r}") from failure


_original_seek_to_committed = ThreadDelegateConsumer.seek_to_committed


async def _seek_to_committed_or_beginning(self: ThreadDelegateConsumer) -> Any:
    """Seek a partition without a committed offset to its beginning too, not leave it as it is.

    aiokafka's ``seek_to_committed`` skips such partitions, keeping the fetch position. When a
    rebalance hands one to this worker (typical of a young consumer group), records fetched
    while it was paused for table recovery are discarded by Faust as not active - the position
    is past them, and the seek that ends the rebalance does not bring it back: the second worker
    started behind hundreds of never-processed changes. ``consumer_auto_offset_reset`` is
    "earliest", so the beginning is where such a partition must start. Changelogs are left
    alone: table recovery positions them itself.
    """
    committed = await _original_seek_to_committed(self)
    uncommitted = [
        ensure_aiokafka_TP(tp)
        for tp, offset in committed.items()
        if (offset is None or offset <= 0) and self.app.topics.acks_enabled_for(tp.topic)
    ]
    if uncommitted:
        await self._thread.seek_to_beginning(*uncommitted)
    return committed


def apply() -> None:
    ThreadDelegateConsumer.seek_to_committed = _seek_to_committed_or_beginning  # type: ignore[method-assign]
    KafkaProducer.send = _send_watching_delivery  # type: ignore[method-assign]
    KafkaProducer.flush = _flush_then_refuse_to_commit  # type: ignore[method-assign]
    Consumer.__init__ = _consumer_init_with_seek_serials  # type: ignore[method-assign]
    Consumer.ack = _ack_only_what_was_processed  # type: ignore[method-assign]
    Consumer._drain_messages = _drain_messages_keeping_seeks  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_until_empty  # type: ignore[method-assign]
    # The buffer stalls table writers at this size (Faust: 100, which throttles every stage).
    ProducerBuffer.max_messages = 10_000
