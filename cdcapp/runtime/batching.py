"""Events in batches: what arrives within a short linger, up to a maximum.

An agent handed to ``each_batch`` reads its stream without acks. A batch opens with the first
event waiting and closes ``linger_s`` after that event arrived, or as soon as it holds
``max_events``; then it goes to ``handle``. Under load batches fill up and Faust's and Kafka's
per-record costs are shared by many changes; an event waits at most ``linger_s`` plus the
``handle`` of the batch before it. (Timing the linger from the batch's opening instead would make
an event that arrived during a long ``handle`` wait the whole linger again, at every hop.) Every
event is acknowledged after ``handle`` returned, that is after everything it caused was handed to
the producer.

The stream is read by a task of its own into a bounded queue, so that waiting for the next event
can time out without cancelling Faust's stream iteration.

Cyclic garbage collection waits while a batch is handled. A batch keeps everything it decodes
and makes alive until it ends (a drain's batch: over ten thousand changes and their messages), so
each young-generation collection during it scans objects that are all still in use, and passes
them on to the next generation to be scanned again: 6 % of a drain's worker CPU (a
``gc.callbacks`` probe). After the batch nearly all of it is freed by reference counting, and the
collection that the allocations meanwhile have made due runs then, over what is left. A batch is
bounded, so the cycles it makes (futures, tracebacks) wait at most one batch.

``handle`` deals with bad input itself (dead letters); if it raises all the same, the worker
crashes: its batch is not acknowledged, and the restarted worker replays it from the last
commit. Restarting only the agent would leave those events unacknowledged for good, and the
partition's commits stuck behind them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

import faust

log = logging.getLogger(__name__)


def positions(events: list[faust.EventT]) -> str:
    """Where a batch's records are: ``topic[partition]@first..last`` per partition."""
    spans: dict[tuple[str, int], list[int]] = {}
    for event in events:
        span = spans.setdefault((event.message.topic, event.message.partition), [event.message.offset] * 2)
        span[0], span[1] = min(span[0], event.message.offset), max(span[1], event.message.offset)
    return ", ".join(f"{topic}[{partition}]@{low}" + (f"..{high}" if high != low else "")
                     for (topic, partition), (low, high) in sorted(spans.items()))


async def each_batch(stream: faust.StreamT, handle: Callable[[list[faust.EventT]], Awaitable[None]],
                     max_events: int, linger_s: float) -> None:
    manual = stream.noack()
    #: (arrival time, event)
    queue: asyncio.Queue[tuple[float, faust.EventT]] = asyncio.Queue(maxsize=max_events)
    loop = asyncio.get_running_loop()

    async def read() -> None:
        async for event in manual.events():
            await queue.put((loop.time(), event))

    reader = asyncio.ensure_future(read())
    try:
        while True:
            first = asyncio.ensure_future(queue.get())
            await asyncio.wait([first, reader], return_when=asyncio.FIRST_COMPLETED)
            if not first.done():
                first.cancel()
                reader.result()  # the stream ended: raise what ended it
                return
            arrived, event = first.result()
            batch = [event]
            deadline = arrived + linger_s
            while len(batch) < max_events:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append((await asyncio.wait_for(queue.get(), remaining))[1])
                    except asyncio.TimeoutError:
                        break
                else:
                    batch.append(queue.get_nowait()[1])
            gc.disable()
            try:
                await handle(batch)
            except Exception as exc:
                log.exception("a batch of %d events (%s) could not be handled; the worker stops", len(batch),
                              positions(batch))
                await stream.app.crash(exc)
                raise
            finally:
                gc.enable()
            for event in batch:
                await manual.ack(event)
    finally:
        reader.cancel()
