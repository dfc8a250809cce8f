"""The rolling 24-hour quota on single updates, in one-second buckets.

Keeping every timestamp would cost ~32 MB at the default 1,000,000; buckets cost at most
86,400 entries. A bucket expires one window after the LAST update counted in it, so a slot
is freed between 24 h and 24 h + 1 s after its update was accepted: the emulator may refuse
for up to a second longer than Target would, never admit more than the quota.
"""

from __future__ import annotations

from collections import deque

_BUCKET_SECONDS = 1.0


class RollingQuota:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._buckets: deque[list[float]] = deque()  # [first_t, last_t, count]
        self._used = 0

    def used(self, now: float) -> int:
        self._expire(now)
        return self._used

    def try_take(self, now: float) -> bool:
        """Count one update at ``now`` if the window has room; False when it is spent."""
        self._expire(now)
        if self._used >= self.limit:
            return False
        last = self._buckets[-1] if self._buckets else None
        if last is not None and now - last[0] < _BUCKET_SECONDS:
            last[1] = max(last[1], now)
            last[2] += 1
        else:
            self._buckets.append([now, now, 1])
        self._used += 1
        return True

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        while buckets and buckets[0][1] + self.window <= now:
            self._used -= int(buckets.popleft()[2])
