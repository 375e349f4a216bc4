"""A clock tests can move: pass it as ``Host(clock=...)``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """Seconds since the epoch, standing still until told to move."""

    now: float = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, on a 30 s step boundary

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
