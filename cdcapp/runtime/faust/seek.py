"""Seek a stream partition without a committed offset to its beginning, not leave it where it is.

aiokafka's ``seek_to_committed`` skips such partitions, keeping the fetch position. When a
rebalance hands one to this worker (typical of a young consumer group), records fetched while it
was paused for table recovery are discarded by Faust as not active - the position is past them,
and the seek that ends the rebalance does not bring it back: the second worker started behind
hundreds of never-processed changes. ``consumer_auto_offset_reset`` is "earliest", so the
beginning is where such a partition must start. Changelogs are left alone: table recovery
positions them itself.
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
