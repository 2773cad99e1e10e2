"""Faust's fetch loop, made to respect seeks that happen while it holds records.

A fetch, and the delivery of each record (an await that can block for a whole rebalance on a full
buffer or on suspended flow), can span a seek: the rebalance's seek of every partition to its
committed offset, or the recovery's seek of a changelog. Faust then delivers records fetched
before the seek, records their offsets as read (ahead of the seek), counts the offsets in between
as a gap (done), and drops the re-fetched records below as already read: changes lost with their
offsets committed - the two-worker rebalance loss. Here records of a partition seeked since its
fetch began are not delivered, and the partition is seeked again to where the seek put it
(nothing was delivered since), which is correct whether the records came from before the seek or
after it (``cdcapp_rebalance_stale_deliveries_total{action="seeked_again"}`` counts it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING, Consumer

from cdcapp.runtime.faust import bulk
from cdcapp.runtime.metrics import STALE_DELIVERIES

log = logging.getLogger(__name__)


class ReadOffsets(dict):
    """Faust's per-partition read offsets, plus a serial number of the last seek of each partition.

    Every writer but the fetch loop is a seek (a rebalance's seek to the committed offsets, the
    table recovery's seek of changelogs, a revocation), so every write except ``delivered``
    takes a new serial: the fetch loop can then tell that a seek overtook the records it holds.
    Every seek is also reported to ``on_seek`` with the offset the partition is read again from
    (None: its beginning), after the new serial is taken. Written from the consumer thread too
    (``_seek_wait``); ``next()`` on a count is atomic.
    """

    _serials = itertools.count(1)

    def __init__(self, on_seek: Callable[[Any, int | None], None] = lambda tp, offset: None) -> None:
        super().__init__()
        self.serial: dict[Any, int] = {}
        self.on_seek = on_seek

    def __missing__(self, tp: Any) -> None:
        return None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        self.serial[tp] = next(self._serials)
        super().__setitem__(tp, offset)
        self.on_seek(tp, offset)

    def __delitem__(self, tp: Any) -> None:
        self.serial[tp] = next(self._serials)
        super().__delitem__(tp)
        self.on_seek(tp, None)

    def pop(self, tp: Any, *default: Any) -> Any:
        self.serial[tp] = next(self._serials)
        offset = super().pop(tp, *default)
        self.on_seek(tp, None)
        return offset

    def update(self, offsets: Any = (), **kwargs: Any) -> None:
        for tp, offset in dict(offsets, **kwargs).items():
            self[tp] = offset

    def delivered(self, tp: Any, offset: int) -> None:
        super().__setitem__(tp, offset)


async def drain_keeping_seeks(self: Consumer, fetcher: Any) -> None:
    """Faust's ``Consumer._drain_messages``, except for the seek serials (see the module text)."""
    read_offsets: ReadOffsets = self._read_offset
    acks_enabled_for = self.app.topics.acks_enabled_for
    bulk_topics: frozenset[str] = getattr(self.app, "bulk_topics", frozenset())
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
            batch = bulk.fetch(self, 1.0, bulk_topics)
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
                if isinstance(message, bulk.BulkMessage):
                    if read is not None and message.first_offset < read:
                        message.records = [r for r in message.records if r.offset >= read]
                        message.first_offset = message.records[0].offset
                    first = message.first_offset
                else:
                    first = offset
                if read and first - read > 1 and acks_enabled_for(message.topic):
                    # Offsets absent from a partition (compaction, transaction markers) are
                    # counted as done, or the commit would wait for them forever.
                    await self._add_gap(tp, read + 1, first)
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                message.seek_serial = serial_at_fetch.get(tp)
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                if seeked_since_fetch(tp):
                    overtaken.add(tp)
                else:
                    read_offsets.delivered(tp, offset)
            self.diag.unset_flag(CONSUMER_FETCHING)
            await seek_again(self, overtaken)
    except self.consumer_stopped_errors:
        if not self.app.should_stop:
            raise
        log.info("Broker stopped the consumer; shutting down")
    except asyncio.CancelledError:
        if not self.app.should_stop:
            raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


async def seek_again(self: Consumer, partitions: set[Any]) -> None:
    """Put partitions whose records were withheld back where their last seek put them."""
    assigned = self.assignment()
    for tp in partitions & assigned:
        STALE_DELIVERIES.labels("seeked_again").inc()
        # Faust keeps no read offset for 0 or for "no committed offset": both mean the start
        # (below the log start, the consumer's reset policy "earliest" applies).
        await self.seek(tp, self._read_offset[tp] or 0)
