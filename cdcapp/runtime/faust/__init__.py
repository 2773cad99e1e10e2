"""Corrections to faust-streaming that the delivery guarantees depend on, one per module.

They are scoped to cdcapp's app: ``transport.Transport`` builds the app's consumer and producer
from the subclasses in ``consumer`` and ``producer``; no Faust class is changed for the process.

=================  ==============================================================================
module             what it corrects
=================  ==============================================================================
``acks``           a message a stream skipped was acked, and counted towards the next commit
``fetch``          a seek overtaking the fetch loop's records was undone, losing the re-fetched ones
``seek``           a partition without a committed offset kept a fetch position past lost records;
                   a recovery round a rebalance overtook seeked with no offset, and crashed
``buffer``         Faust's changelog buffer flush returned with writes still in it
``delivery``       a send Kafka finally refused vanished, and the next commit marked its event done
=================  ==============================================================================
"""
