"""Exponential backoff, the one delay policy behind every retry loop of the project.

Pure: it hands out delays and is told about progress, so a loop's waiting is testable without
sleeping. (tenacity counts attempts for the life of a retry loop; the relay and the sink need the
delay to start small again after progress, which this states directly.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial: float
    maximum: float
    factor: float = 2.0
    _next: float = field(init=False)

    def __post_init__(self) -> None:
        self._next = self.initial

    def delay(self) -> float:
        """The delay before the next attempt; each call lengthens the following one."""
        current = self._next
        self._next = min(self.maximum, current * self.factor)
        return current

    def reset(self) -> None:
        """Progress was made: the next failure waits ``initial`` again."""
        self._next = self.initial
