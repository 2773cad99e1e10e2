"""each_batch: batches of what arrives within the linger, acknowledged only after they were handled."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from cdcapp.runtime.batching import each_batch, positions


class Stream:
    """What each_batch uses of a Faust stream: events without acks, ack, the app."""

    def __init__(self, events: list[Any]) -> None:
        self._events = events
        self.acked: list[Any] = []
        self.crashed: list[BaseException] = []

        async def crash(exc: BaseException) -> None:
            self.crashed.append(exc)

        self.app = SimpleNamespace(crash=crash)

    def noack(self) -> "Stream":
        return self

    async def events(self):  # noqa: ANN201 - an async generator, like Faust's
        for event in self._events:
            yield event
        await asyncio.Event().wait()  # a stream does not end

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


async def run(stream: Stream, handle: Any, max_events: int) -> None:
    task = asyncio.ensure_future(each_batch(stream, handle, max_events, linger_s=0.01))
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if task.done() or len(stream.acked) == len(stream._events):
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_waiting_events_form_batches_of_at_most_max_and_are_acked_after_their_handling() -> None:
    stream = Stream(list(range(7)))
    handled: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        assert not set(batch) & set(stream.acked), "acked only after being handled"
        handled.append(batch)

    await run(stream, handle, max_events=3)
    assert [e for batch in handled for e in batch] == list(range(7)) and max(map(len, handled)) == 3
    assert stream.acked == list(range(7))


def event(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


async def test_a_batch_that_cannot_be_handled_crashes_the_worker_unacknowledged(caplog: Any) -> None:
    stream = Stream([event("t", 0, 1), event("t", 0, 2)])

    async def handle(batch: list[int]) -> None:
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        await each_batch(stream, handle, max_events=10, linger_s=0.01)
    assert stream.acked == [] and [str(e) for e in stream.crashed] == ["broken"]
    assert "a batch of 2 events (t[0]@1..2) could not be handled" in caplog.text


def test_a_failed_batch_is_named_by_where_its_records_are() -> None:
    batch = [event("oltp.orders", 1, 7), event("oltp.orders", 0, 3), event("oltp.orders", 1, 9), event("x", 2, 5)]
    assert positions(batch) == "oltp.orders[0]@3, oltp.orders[1]@7..9, x[2]@5"


async def test_cyclic_collection_waits_while_a_batch_is_handled_and_resumes_after_it() -> None:
    import gc

    stream = Stream([event("t", 0, 1), event("t", 0, 2)])
    seen: list[bool] = []

    async def handle(batch: list[Any]) -> None:
        seen.append(gc.isenabled())
        if batch[0].message.offset == 2:
            raise RuntimeError("broken")

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        await each_batch(stream, handle, max_events=1, linger_s=0.0)
    assert seen == [False, False] and gc.isenabled(), "enabled again after each batch, a failed one too"
