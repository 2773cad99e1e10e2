"""Give commit credit only to a message a stream took up since its partition's last seek.

Faust's streams *skip* a message that reaches them while flow control is suspended (during a
rebalance) or that was fetched in an older generation, and then ack it as if processed. The
consumer counts that ack towards the next commit, so once the offsets below it are acked the
commit moves past a change nobody processed: the rebalance loss of the two-worker test. Skipped
messages are never ``tracked`` (streams track a message when they take it up), so such an ack,
and any ack of an older generation's message, is recorded without credit. Every rebalance ends
with a seek to the committed offsets, so these messages are read again.

A seek also takes back the credit of every offset at or above it, and a message delivered before
the seek (still in a batch, or in a stream's buffer) earns none when it is acked later: those
offsets are read again, and only their new delivery counts. Otherwise a commit could cover a
record processed before the seek while the re-read had redone only the records below it - a
replay of a parent's older ``info`` over its newer one, committed past the newer one: fact rows
lost after a rebalance in the three-worker test.
"""

from __future__ import annotations

from faust.transport.consumer import Consumer
from faust.types import Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from cdcapp.runtime.faust.bulk import BulkMessage
from cdcapp.runtime.metrics import STALE_DELIVERIES

#: the seek serial of a message the fetch loop did not deliver: equal to none
NOT_DELIVERED = object()


def ack_with_credit_rule(consumer: Consumer, message: Message, credited_ack: "type[Consumer]") -> bool:
    """``Consumer.ack`` as cdcapp's consumer runs it; ``credited_ack`` is the class whose ack credits."""
    if not consumer.app.topics.acks_enabled_for(message.topic):
        return credited_ack.ack(consumer, message)
    if message.tracked and message.generation_id == consumer.app.consumer_generation_id \
            and getattr(message, "seek_serial", NOT_DELIVERED) == consumer._read_offset.serial.get(message.tp):
        if isinstance(message, BulkMessage):
            return _ack_run(consumer, message)
        return credited_ack.ack(consumer, message)
    with ack_lock:
        if message.acked:
            return False
        message.acked = True
        consumer._unacked_messages.discard(message)
    STALE_DELIVERIES.labels("ack_without_credit").inc()
    return False


def _ack_run(consumer: Consumer, message: BulkMessage) -> bool:
    """Credit every offset of a bulk message's run, as Faust's ``ack`` credits one."""
    with ack_lock:
        if message.acked:
            return False
        message.acked = True
        consumer._unacked_messages.discard(message)
        tp = message.tp
        committed = consumer._committed_offset[tp]
        acked_index = consumer._acked_index[tp]
        acked = consumer._acked[tp]
        for offset in range(message.first_offset, message.offset + 1):
            if (committed is None or offset >= committed) and offset not in acked_index:
                acked_index.add(offset)
                acked.append(offset)
                consumer._n_acked += 1
        notify(consumer._waiting_for_ack)
        return True


def take_back_credit(consumer: Consumer, tp: object, offset: int | None) -> None:
    """The partition is read again from ``offset`` (None: from its beginning): credit for the
    offsets from there on goes, to be earned again by their new delivery."""
    with ack_lock:
        acked = consumer._acked.get(tp)
        if not acked:
            return
        kept = [o for o in acked if offset is not None and o < offset]
        if len(kept) == len(acked):
            return
        index = consumer._acked_index.get(tp)
        if index is not None:
            index.difference_update(o for o in acked if offset is None or o >= offset)
        acked[:] = kept
