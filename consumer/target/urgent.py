"""The urgent path: URGENT events also go at once to the Single Profile Update API
(guarantee 5 in docs/guarantees.md).

A speed path on top of bulk: the event keeps its bulk row, which settles its offset, so
anything that stops a single call (budget spent, an id with ``+`` or ``/``, parameters
over 60 KB, a full queue, retries run out, or its bulk batch already on its way) only
skips the call and counts why. Nothing is dropped.

``offer`` runs on the consume loop's thread and decides; a small pool of worker threads
makes the calls (sync httpx on threads: cheaper per request here than async).

The queue is bounded by a count and by bytes (``queue_max_bytes``): an event's cost is
the length of its encoded parameters, which the 60 KB check computes anyway, plus a fixed
cost per event and per attribute (``queued_cost``). ``offer`` adds it, a worker gives it
back when it takes the event; past either bound the event keeps only the bulk path.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
from collections.abc import Callable, Container
from enum import StrEnum

from consumer.backoff import Backoff
from consumer.clock import Clock, SystemClock
from consumer.core.model import IdType, ProfileUpdate
from consumer.errors import PermanentError, RetryableError
from consumer.metrics import Metrics
from consumer.target.api import SINGLE_POST_MAX_BYTES, single_id_allowed, single_query
from consumer.target.quota import RollingBudget
from consumer.workers import Crashes

log = logging.getLogger("profile_sync.single")

SingleCall = Callable[[IdType, str, dict[str, str]], None]

# What Python holds for a queued event beyond its encoded parameters: the queue's tuple,
# the ProfileUpdate, its TopicPartition, the attributes dict and the profile id's string
# header (EVENT_COST); each attribute's two string headers and its dict slot, less the
# 10 characters ``&profile.=`` the parameters count for it (ATTRIBUTE_COST). Measured by
# bench/bench_urgent_memory.py (tracemalloc), rounded up.
EVENT_COST = 700
ATTRIBUTE_COST = 120


def queued_cost(update: ProfileUpdate, encoded_len: int) -> int:
    """Bytes an urgent event counts against the queue's byte bound (no per-value loop)."""
    return EVENT_COST + encoded_len + len(update.attributes) * ATTRIBUTE_COST


class SingleOutcome(StrEnum):
    """What became of an urgent event's single call (the ``outcome`` metric label)."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED_INVALID_ID = "skipped_invalid_id"
    SKIPPED_TOO_LARGE = "skipped_too_large"
    SKIPPED_QUEUE_FULL = "skipped_queue_full"
    SKIPPED_QUOTA = "skipped_quota"
    SKIPPED_STALE = "skipped_stale"
    SKIPPED_SUPERSEDED = "skipped_superseded"
    SKIPPED_SHUTDOWN = "skipped_shutdown"


class SingleUpdater:
    def __init__(
        self,
        call: SingleCall,
        budget: RollingBudget,
        *,
        concurrency: int,
        queue_max: int,
        queue_max_bytes: int,
        max_attempts: int,
        backoff: Backoff,
        metrics: Metrics | None,
        superseded: Container[int],
        state_file: str = "",
        clock: Clock | None = None,
        crashes: Crashes | None = None,
    ) -> None:
        """``superseded`` holds the ids of batches already cut (consumer/core/uploads.py):
        an urgent event whose batch is among them travels with it, no single call needed."""
        self._call = call
        self.budget = budget
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._metrics = metrics
        self._superseded = superseded
        self._state_file = state_file
        self._clock = clock or SystemClock()
        self._queue: queue.Queue[tuple[ProfileUpdate, int, int] | None] = queue.Queue(queue_max)
        self._max_bytes = queue_max_bytes
        self._bytes = 0  # added by offer (loop thread), given back by the workers
        self._bytes_lock = threading.Lock()
        self._stopping = threading.Event()
        self._rng = random.Random()
        self._crashes = crashes or Crashes(metrics)
        self._threads = [
            self._crashes.thread("single", self._work, f"single-{i}") for i in range(concurrency)
        ]
        for t in self._threads:
            t.start()

    # -- consume-loop side

    def offer(self, update: ProfileUpdate, batch_id: int, now: float) -> SingleOutcome:
        """Queue a single update for an URGENT event, or say why not (the outcome label)."""
        if not single_id_allowed(update.profile_id):
            return SingleOutcome.SKIPPED_INVALID_ID
        encoded_len = len(single_query(update.id_type, update.profile_id, update.attributes))
        if encoded_len > SINGLE_POST_MAX_BYTES - 1024:
            return SingleOutcome.SKIPPED_TOO_LARGE
        cost = queued_cost(update, encoded_len)
        # Only this thread adds bytes: a bound checked here cannot be overrun meanwhile.
        if self._queue.full() or self._bytes + cost > self._max_bytes:
            return SingleOutcome.SKIPPED_QUEUE_FULL
        if not self.budget.try_spend(now):
            return SingleOutcome.SKIPPED_QUOTA
        with self._bytes_lock:
            self._bytes += cost
        self._queue.put_nowait((update, batch_id, cost))
        return SingleOutcome.QUEUED

    @property
    def queued_bytes(self) -> int:
        """Bytes of the events waiting in the queue, as counted against its byte bound."""
        return self._bytes

    def save_state(self) -> None:
        """Persist the budget's spend (atomic rename) so a restart cannot overrun it."""
        if not self._state_file:
            return
        tmp = f"{self._state_file}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(self.budget.to_state())
            os.replace(tmp, self._state_file)
        except OSError as exc:
            log.warning(
                "cannot save the single-update budget", extra={"fields": {"error": str(exc)}}
            )

    @staticmethod
    def load_budget(limit: int, state_file: str, now: float) -> RollingBudget:
        if state_file:
            try:
                with open(state_file, encoding="utf-8") as fh:
                    return RollingBudget.from_state(limit, fh.read(), now)
            except OSError:
                pass
        return RollingBudget(limit)

    def close(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        deadline = self._clock.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - self._clock.monotonic()))
        # What no worker took is left to the bulk path; count it and give its bytes back.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._taken(item[2])
                self._count(SingleOutcome.SKIPPED_SHUTDOWN)
        self.save_state()

    # -- workers

    def _count(self, outcome: SingleOutcome) -> None:
        if self._metrics is not None:
            self._metrics.single_updates.labels(outcome).inc()

    def _taken(self, cost: int) -> None:
        with self._bytes_lock:
            self._bytes -= cost

    def _work(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get()
            if item is None:
                return
            update, batch_id, cost = item
            self._taken(cost)
            try:
                self._send(update, batch_id)
            except Exception as exc:  # the bulk path still carries the event
                self._crashes.caught("single", exc)
                self._count(SingleOutcome.FAILED)

    def _send(self, update: ProfileUpdate, batch_id: int) -> None:
        for attempt in range(1, self._max_attempts + 1):
            if self._stopping.is_set():
                self._count(SingleOutcome.SKIPPED_SHUTDOWN)
                return
            if batch_id in self._superseded:
                # Its bulk batch is already on its way: a late single call adds nothing.
                self._count(SingleOutcome.SKIPPED_SUPERSEDED)
                return
            try:
                self._call(update.id_type, update.profile_id, update.attributes)
            except RetryableError as exc:
                if self._metrics is not None:
                    self._metrics.target_retries.labels("single").inc()
                if attempt < self._max_attempts:
                    self._stopping.wait(self._backoff.delay(attempt, exc.retry_after, self._rng))
                    continue
                log.warning("single update gave up", extra={"fields": {"error": str(exc)}})
                self._count(SingleOutcome.FAILED)
                return
            except PermanentError as exc:
                log.warning("single update rejected", extra={"fields": {"error": str(exc)}})
                self._count(SingleOutcome.FAILED)
                return
            self._count(SingleOutcome.SENT)
            if self._metrics is not None:
                self._metrics.urgent_delay.observe(
                    max(0.0, self._clock.time() - update.occurred_at / 1000)
                )
            return
