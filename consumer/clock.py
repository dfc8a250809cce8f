"""Time as a seam: the core and the edges ask one injected ``Clock``; tests pass
``tests.utils.FakeClock``."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for ages, deadlines and backoff."""
        ...

    def time(self) -> float:
        """Seconds since the epoch; for comparing with event timestamps."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()
