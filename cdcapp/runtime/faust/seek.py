"""Seek a stream partition without a committed offset to its beginning, not leave it where it is.

aiokafka's ``seek_to_committed`` skips such partitions, keeping the fetch position. When a
rebalance hands one to this worker (typical of a young consumer group), records fetched while it
was paused for table recovery are discarded by Faust as not active - the position is past them,
and the seek that ends the rebalance does not bring it back: the second worker started behind
hundreds of never-processed changes. ``consumer_auto_offset_reset`` is "earliest", so the
beginning is where such a partition must start. Changelogs are left alone: table recovery
positions them itself.

A second correction: table recovery seeks with a plan that a rebalance can overtake. When a
rebalance lands during recovery, Faust's recovery loop goes on with the old round and, once its
changelogs are read, seeks the standby partitions - whose set and offsets the new assignment has
meanwhile rewritten: a partition it added has no offset yet (None), one it took away is no longer
assigned. aiokafka refuses either seek, and the exception crashed the worker (the three-worker
test, under load). Those partitions are left out of the seek; the recovery round the new
assignment starts positions them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import ensure_aiokafka_TP


def uncommitted_stream_partitions(consumer: Any, committed: Mapping[Any, int | None]) -> list[Any]:
    return [
        ensure_aiokafka_TP(tp)
        for tp, offset in committed.items()
        if (offset is None or offset <= 0) and consumer.app.topics.acks_enabled_for(tp.topic)
    ]


def seekable(consumer: Any, partitions: Mapping[Any, int | None]) -> tuple[dict[Any, int], list[Any]]:
    """The seeks that can be made (an offset, on an assigned partition), and the partitions left out."""
    assigned = consumer.assignment()
    seeks = {tp: offset for tp, offset in partitions.items()
             if isinstance(offset, int) and offset >= 0 and tp in assigned}
    return seeks, [tp for tp in partitions if tp not in seeks]
