"""Every bulk-API call passes the tenant's call budget (consumer/core/budget.py).

``BudgetGate`` is what the upload workers and the status thread hold: an upload waits for
its call (``wait_turn``, interruptible when the batch is cancelled), a status poll asks
without blocking (``try_take``, the status thread polls something else meanwhile), and
``call`` turns a 503 from Target into a smaller share. Metrics: calls spent, waits and
503s by api; the share is a gauge set by the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from consumer.clock import Clock
from consumer.core.budget import CallBudget, CallKind
from consumer.errors import RetryableError
from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.budget")

T = TypeVar("T")


class BudgetGate:
    def __init__(self, budget: CallBudget, clock: Clock, metrics: Metrics | None) -> None:
        self.budget = budget
        self._clock = clock
        self._metrics = metrics

    def wait_turn(self, kind: CallKind, cancelled: threading.Event | None = None) -> bool:
        """Block until a call of ``kind`` is taken; False if ``cancelled`` was set first."""
        budget = self.budget
        delay = budget.take(kind, self._clock.monotonic())
        if delay <= 0:
            self._spent(kind)
            return True
        if self._metrics is not None:
            self._metrics.budget_waits.labels(kind.value).inc()
        if kind is CallKind.UPLOAD:
            budget.waiting(+1)
        try:
            while delay > 0:
                if cancelled is not None:
                    if cancelled.wait(delay):
                        return False
                else:
                    threading.Event().wait(delay)
                delay = budget.take(kind, self._clock.monotonic())
        finally:
            if kind is CallKind.UPLOAD:
                budget.waiting(-1)
        self._spent(kind)
        return True

    def try_take(self, kind: CallKind) -> float:
        """Take a call if the budget has one now: 0.0, else the seconds to wait."""
        delay = self.budget.take(kind, self._clock.monotonic())
        if delay <= 0:
            self._spent(kind)
        elif self._metrics is not None:
            self._metrics.budget_waits.labels(kind.value).inc()
        return delay

    def call(self, kind: CallKind, fn: Callable[[], T]) -> T:
        """Run one call already taken from the budget; a 503 shrinks the share."""
        try:
            return fn()
        except RetryableError as exc:
            if exc.status == 503:
                self.throttled(kind)
            raise

    def throttled(self, kind: CallKind) -> None:
        now = self._clock.monotonic()
        if self._metrics is not None:
            self._metrics.budget_throttled.labels(kind.value).inc()
        if self.budget.throttled(now):
            log.warning(
                "Target answered 503 (tenant call limit): share of the call budget halved",
                extra={
                    "fields": {
                        "api": kind.value,
                        "share_per_minute": round(self.budget.share(now), 2),
                        "members": self.budget.members,
                    }
                },
            )

    def _spent(self, kind: CallKind) -> None:
        if self._metrics is not None:
            self._metrics.budget_calls.labels(kind.value).inc()
