"""The tenant's bulk-API call budget, shared by the replicas of one consumer group.

Target allows 50 calls a minute per tenant to its bulk profile API and answers 503 past
it; uploads and batch-status polls both count (docs/operations.md, "The call budget").
Every replica takes ``tenant_per_minute / members`` of the budget, where ``members`` is
the size of its consumer group as Kafka describes it, so adding replicas never raises
the tenant's call rate. A 503 means someone (a replica that has not yet seen a new
member, another tool of the customer) spends more than we think: the share halves at
once and grows back slowly (additive increase, multiplicative decrease).

Calls are counted in a rolling window, like Target's limit: a replica whose share is
``S`` calls a minute makes at most ``floor(S)`` calls in any 60 seconds (one call every
``60 / S`` seconds when ``S`` is under one). Uploads may spend the whole share; a status
poll only what is left once the uploads waiting for a call are served, keeping one call
free for the next upload (polls take what uploads leave).

Pure logic with a lock (the upload workers and the status thread share one budget): the
caller passes the monotonic time.
"""

from __future__ import annotations

import threading
from collections import deque
from enum import StrEnum

WINDOW_SECONDS = 60.0
# A 503 halves the share; never below this fraction of the fair share.
DECREASE_FACTOR = 0.5
MIN_FACTOR = 1 / 16
# 503s closer together than this are one signal (calls in flight all get one).
DECREASE_SPACING_SECONDS = 5.0
# Recovery after a 503: this much of the fair share back per minute without one.
RECOVERY_PER_MINUTE = 0.1


class CallKind(StrEnum):
    """What a call is for (the ``api`` label of the budget metrics)."""

    UPLOAD = "upload"
    POLL = "poll"


class CallBudget:
    def __init__(self, tenant_per_minute: int, now: float) -> None:
        if tenant_per_minute < 1:
            raise ValueError("the call budget needs at least one call a minute")
        self.tenant_per_minute = tenant_per_minute
        self.members = 1
        self._lock = threading.Lock()
        self._calls: deque[float] = deque()  # when each call of the window was taken
        self._last_call: float | None = None
        self._factor_at = now  # when the factor was last set
        self._factor = 1.0
        self._last_decrease: float | None = None
        self.uploads_waiting = 0
        self._fewer: tuple[int, float] | None = None  # (members, from when) after a leave

    # -- what the replica may spend

    def set_members(self, members: int, now: float) -> None:
        """The consumer group now has ``members`` members (from Kafka's group description).

        More members shrink the share at once. Fewer members grow it only a window later:
        the calls of a member that left still count in Target's rolling minute.
        """
        members = max(1, members)
        with self._lock:
            if members >= self.members:
                self.members = members
                self._fewer = None
            elif self._fewer is None or self._fewer[0] != members:
                self._fewer = (members, now + WINDOW_SECONDS)

    def factor(self, now: float) -> float:
        """How much of the fair share the 503s of late leave (1.0: all of it)."""
        with self._lock:
            return self._factor_now(now)

    def share(self, now: float) -> float:
        """Calls a minute this replica may make now."""
        with self._lock:
            return self._share(now)

    def used(self, now: float) -> int:
        """Calls this replica made in the last minute."""
        with self._lock:
            self._expire(now)
            return len(self._calls)

    def room(self, now: float) -> int:
        """Calls this replica could make right now without waiting (uploads' view)."""
        with self._lock:
            return self._room(now)

    # -- spending

    def waiting(self, delta: int) -> None:
        """An upload starts (+1) or stops (-1) waiting for a call; polls leave it room."""
        with self._lock:
            self.uploads_waiting = max(0, self.uploads_waiting + delta)

    def take(self, kind: CallKind, now: float) -> float:
        """Spend one call of ``kind``: 0.0 when taken, else the seconds to wait first."""
        with self._lock:
            self._expire(now)
            share = self._share(now)
            calls = self._calls
            if share < 1.0:
                # Fewer than one call a minute: one call every 60 / share seconds.
                spacing = WINDOW_SECONDS / share
                if kind is CallKind.POLL and self.uploads_waiting:
                    return spacing
                last = self._last_call
                if last is not None and now - last < spacing:
                    return last + spacing - now
                calls.append(now)
                self._last_call = now
                return 0.0
            allowed = int(share)
            if kind is CallKind.POLL:
                # Keep a call for every upload waiting, and one for the next upload.
                allowed -= self.uploads_waiting + (1 if allowed >= 2 else 0)
            if len(calls) < max(0, allowed):
                calls.append(now)
                self._last_call = now
                return 0.0
            return self._next_free(now, max(1, len(calls) - max(0, allowed) + 1))

    def throttled(self, now: float) -> bool:
        """Target answered 503: shrink the share. True if it shrank (not a repeat)."""
        with self._lock:
            last = self._last_decrease
            if last is not None and now - last < DECREASE_SPACING_SECONDS:
                return False
            self._factor = max(MIN_FACTOR, self._factor_now(now) * DECREASE_FACTOR)
            self._factor_at = now
            self._last_decrease = now
            return True

    # -- inside the lock

    def _factor_now(self, now: float) -> float:
        recovered = RECOVERY_PER_MINUTE * max(0.0, now - self._factor_at) / 60.0
        return min(1.0, self._factor + recovered)

    def _share(self, now: float) -> float:
        fewer = self._fewer
        if fewer is not None and now >= fewer[1]:
            self.members, self._fewer = fewer[0], None
        return self.tenant_per_minute / self.members * self._factor_now(now)

    def _expire(self, now: float) -> None:
        calls = self._calls
        horizon = now - WINDOW_SECONDS
        while calls and calls[0] <= horizon:
            calls.popleft()

    def _room(self, now: float) -> int:
        self._expire(now)
        share = self._share(now)
        if share < 1.0:
            last = self._last_call
            return 0 if last is not None and now - last < WINDOW_SECONDS / share else 1
        return max(0, int(share) - len(self._calls))

    def _next_free(self, now: float, nth: int) -> float:
        """Seconds until ``nth`` calls of the window have aged out of it."""
        calls = self._calls
        if not calls:
            return 1.0  # the budget is all reserved (polls behind uploads): look again soon
        oldest = calls[min(nth, len(calls)) - 1]
        return max(0.001, oldest + WINDOW_SECONDS - now)
