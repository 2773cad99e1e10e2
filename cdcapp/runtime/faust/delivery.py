"""Remember a send that Kafka finally refused, so that no commit passes over it.

Faust and cdcapp hand messages to aiokafka and keep no eye on the delivery future; when aiokafka
gives up on one (after ``producer_request_timeout`` of retries), nothing noticed it and the next
commit marked its event as processed. ``DeliveryWatch`` records the first such failure; the flush
that precedes every commit (``cdcapp.runtime.checkpoint``) then raises, the worker crashes without
committing, and its successor replays from the last good commit.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class DeliveryWatch:
    def __init__(self) -> None:
        self.failure: BaseException | None = None

    def watch(self, delivery: asyncio.Future) -> None:
        delivery.add_done_callback(self._done)

    def _done(self, delivery: asyncio.Future) -> None:
        if delivery.cancelled() or delivery.exception() is None:
            return
        if self.failure is None:
            log.error("Kafka refused a message for good: %r; no offset will be committed", delivery.exception())
            self.failure = delivery.exception()
