"""The tenant-wide limit on bulk-API calls: at most N in any rolling window (Target: 50 a minute).

Target's limits page: "50 calls per minute for the Admin, Reporting, and bulk profile update
APIs ... If you make more than 50 API calls per minute, Target returns a '503 HTTP status'".
The emulator counts bulk uploads (v1 and v2) and batch-status calls against one budget per
client; a call is admitted if fewer than N calls were admitted in the last ``window``
seconds, and a refused call uses no part of the budget.

Every call is also remembered with its time whether or not the limit is on, so a test of a
client that must budget its own calls can read the most calls it made in any window
(``peak_seen``) even with the limit switched off. Pure logic: the caller passes the clock
value and holds the app's lock.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class RollingRateLimit:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit  # 0: no limit (calls are still counted)
        self.window = window
        self._admitted: deque[float] = deque()
        self._seen: deque[float] = deque()  # admitted and refused calls
        self.counted = 0  # calls admitted since the start (or reset)
        self.refused = 0  # calls answered 503
        self.peak_seen = 0  # most calls, admitted or refused, within one window
        self.peak_admitted = 0

    def try_admit(self, now: float) -> bool:
        """Count one call at ``now``; False when the window already holds ``limit`` calls."""
        self._expire(now)
        self._seen.append(now)
        self.peak_seen = max(self.peak_seen, len(self._seen))
        if self.limit and len(self._admitted) >= self.limit:
            self.refused += 1
            return False
        self._admitted.append(now)
        self.counted += 1
        self.peak_admitted = max(self.peak_admitted, len(self._admitted))
        return True

    def describe(self, now: float) -> dict[str, Any]:
        """The counters shown by ``/_emulator/stats`` under ``bulk_rate``."""
        self._expire(now)
        return {
            "limit": self.limit,
            "window_seconds": self.window,
            "calls_counted": self.counted,
            "refused_503": self.refused,
            "calls_in_window": len(self._seen),
            "admitted_in_window": len(self._admitted),
            "peak_calls_in_window": self.peak_seen,
            "peak_admitted_in_window": self.peak_admitted,
        }

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        for calls in (self._admitted, self._seen):
            while calls and calls[0] <= horizon:
                calls.popleft()
