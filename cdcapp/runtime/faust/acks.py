"""Give commit credit only to a message a stream took up in the current generation.

Faust's streams *skip* a message that reaches them while flow control is suspended (during a
rebalance) or that was fetched in an older generation, and then ack it as if processed. The
consumer counts that ack towards the next commit, so once the offsets below it are acked the
commit moves past a change nobody processed: the rebalance loss of the two-worker test. Skipped
messages are never ``tracked`` (streams track a message when they take it up), so such an ack,
and any ack of an older generation's message, is recorded without credit. Every rebalance ends
with a seek to the committed offsets, so these messages are read again.
"""

from __future__ import annotations

from faust.transport.consumer import Consumer
from faust.types import Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from cdcapp.runtime.faust.bulk import BulkMessage
from cdcapp.runtime.metrics import STALE_DELIVERIES


def ack_with_credit_rule(consumer: Consumer, message: Message, credited_ack: "type[Consumer]") -> bool:
    """``Consumer.ack`` as cdcapp's consumer runs it; ``credited_ack`` is the class whose ack credits."""
    if not consumer.app.topics.acks_enabled_for(message.topic):
        return credited_ack.ack(consumer, message)
    if message.tracked and message.generation_id == consumer.app.consumer_generation_id:
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
