"""When to flush the sink buffer: a pure object handed the time, testable without clocks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class FlushPolicy:
    max_rows: int
    max_age_s: float
    rows: int = 0
    oldest_at: float | None = None

    def added(self, count: int, now: float) -> None:
        if self.rows == 0:
            self.oldest_at = now
        self.rows += count

    def due(self, now: float) -> bool:
        return self.seconds_until_due(now) == 0.0

    def seconds_until_due(self, now: float) -> float | None:
        """How long until ``due`` (0: now); None while nothing is buffered."""
        if self.rows == 0:
            return None
        if self.rows >= self.max_rows:
            return 0.0
        return max(0.0, (self.oldest_at if self.oldest_at is not None else now) + self.max_age_s - now)

    def flushed(self) -> None:
        self.rows = 0
        self.oldest_at = None
