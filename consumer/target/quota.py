"""The single-update budget: at most N calls in any rolling 24 hours
(guarantee 5 in docs/guarantees.md).

Spending is counted in one-minute buckets, so the window slides with a minute's
granularity and memory is 1,440 counters whatever the rate. ``to_state`` and
``from_state`` let the spend survive a restart (see ``SINGLE_QUOTA_STATE_FILE``).
Pure logic: the caller passes the wall-clock time.
"""

from __future__ import annotations

import json
from collections import deque

WINDOW_SECONDS = 24 * 3600
BUCKET_SECONDS = 60


class RollingBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buckets: deque[list[int]] = deque()  # [bucket start (s), count], oldest first
        self._spent = 0

    def _expire(self, now: float) -> None:
        horizon = int(now) - WINDOW_SECONDS
        buckets = self._buckets
        while buckets and buckets[0][0] + BUCKET_SECONDS <= horizon:
            self._spent -= buckets.popleft()[1]

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.limit - self._spent)

    def try_spend(self, now: float) -> bool:
        """Take one call from the budget; False when it is spent."""
        self._expire(now)
        if self._spent >= self.limit:
            return False
        start = int(now) // BUCKET_SECONDS * BUCKET_SECONDS
        if self._buckets and self._buckets[-1][0] == start:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([start, 1])
        self._spent += 1
        return True

    def to_state(self) -> str:
        return json.dumps({"limit": self.limit, "buckets": list(self._buckets)})

    @classmethod
    def from_state(cls, limit: int, state: str, now: float) -> RollingBudget:
        """Restore the spend; a state that cannot be read counts as nothing spent."""
        budget = cls(limit)
        try:
            buckets = json.loads(state)["buckets"]
            for start, count in buckets:
                budget._buckets.append([int(start), int(count)])
                budget._spent += int(count)
        except (ValueError, KeyError, TypeError):
            return cls(limit)
        budget._expire(now)
        return budget
