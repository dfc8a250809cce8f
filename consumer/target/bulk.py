"""Sending batch files to the Bulk API from worker threads, with retries
(guarantee 6 in docs/guarantees.md).

The consume loop submits ``BatchFile``s; one worker per id type posts them **in the order
they were cut**, retrying retryable failures with capped exponential backoff and full
jitter for as long as it takes, and reports one ``BulkResult`` per batch on a queue that
the loop drains. Order matters: two batches holding the same profile, posted at once,
could be accepted (and applied) in the wrong order and put older values back. The bulk
API only queues the file, so one upload at a time per id type costs little.

A batch can be cancelled (its partitions were revoked): it is then never sent again, and
its result says so.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from consumer.backoff import Backoff
from consumer.clock import Clock, SystemClock
from consumer.core.budget import CallKind
from consumer.core.model import BatchFile, IdType
from consumer.errors import PermanentError, RetryableError
from consumer.metrics import Metrics
from consumer.target.api import BulkAccepted
from consumer.target.gate import BudgetGate
from consumer.workers import Crashes

log = logging.getLogger("profile_sync.sender")


# How long close() waits for the worker threads. They are daemons, so nothing is lost by
# not waiting for a call still on the wire; waiting longer would break the shutdown
# timeout (guarantee 10 in docs/guarantees.md).
CLOSE_JOIN_SECONDS = 0.5


class BulkOutcome(StrEnum):
    """How an upload ended (the value is the ``outcome`` label and log field)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # Target said no for good
    CANCELLED = "cancelled"  # its partitions were revoked or the service stopped


@dataclass(frozen=True, slots=True)
class BulkResult:
    batch: BatchFile
    outcome: BulkOutcome
    accepted: BulkAccepted | None
    error: str
    attempts: int
    resubmission: bool
    finished_at: float  # wall-clock seconds (Clock.time)


class _Job:
    __slots__ = ("batch", "cancelled", "resubmission")

    def __init__(self, batch: BatchFile, resubmission: bool) -> None:
        self.batch = batch
        self.cancelled = threading.Event()
        self.resubmission = resubmission


class BulkSender:
    """The ``Uploads`` seam of consumer/core/seams.py over Target's Bulk API."""

    def __init__(
        self,
        post: Callable[[BatchFile], BulkAccepted],
        backoff: Backoff,
        metrics: Metrics | None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        gate: BudgetGate | None = None,
        crashes: Crashes | None = None,
    ) -> None:
        """``gate``: every attempt waits for a call of the tenant's budget (issue 11)."""
        self._post = post
        self._gate = gate
        self._crashes = crashes or Crashes(metrics)
        self._clock = clock or SystemClock()
        self._backoff = backoff
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._jobs: dict[IdType, queue.Queue[_Job | None]] = {t: queue.Queue() for t in IdType}
        self.results: queue.Queue[BulkResult] = queue.Queue()
        self._active: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            self._crashes.thread("bulk", partial(self._work, jobs), f"bulk-sender-{t.value}")
            for t, jobs in self._jobs.items()
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: BatchFile, resubmission: bool = False) -> None:
        job = _Job(batch, resubmission)
        with self._lock:
            self._active[batch.batch_id] = job
        self._jobs[batch.id_type].put(job)

    def next_result(self, timeout: float = 0.0) -> BulkResult | None:
        """A finished upload, waiting up to ``timeout`` seconds; None if there is none."""
        try:
            if timeout <= 0:
                return self.results.get_nowait()
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self, batch_id: int) -> None:
        with self._lock:
            job = self._active.get(batch_id)
        if job is not None:
            job.cancelled.set()

    def close(self, timeout: float = CLOSE_JOIN_SECONDS) -> None:
        """Stop the workers: cancel what is left, wait for threads (each finishes one try)
        at most ``timeout`` seconds in all; they are daemons, so a call still on the wire
        never holds the process past its shutdown timeout (guarantee 10)."""
        self._stopping.set()
        with self._lock:
            for job in self._active.values():
                job.cancelled.set()
        for jobs in self._jobs.values():
            jobs.put(None)
        deadline = self._clock.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - self._clock.monotonic()))

    def _work(self, jobs: queue.Queue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            result = self._send(job)
            with self._lock:
                self._active.pop(job.batch.batch_id, None)
            self.results.put(result)

    def _send(self, job: _Job) -> BulkResult:
        batch = job.batch
        attempt = 0
        error = ""
        gate = self._gate
        while not job.cancelled.is_set():
            if gate is not None and not gate.wait_turn(CallKind.UPLOAD, job.cancelled):
                break
            attempt += 1
            try:
                if gate is None:
                    accepted = self._post(batch)
                else:
                    accepted = gate.call(CallKind.UPLOAD, lambda: self._post(batch))
            except RetryableError as exc:
                error = str(exc)
                delay = self._backoff.delay(attempt, exc.retry_after, self._rng)
                log.warning(
                    "bulk upload failed, retrying",
                    extra={
                        "fields": {
                            "batch_id": batch.batch_id,
                            "attempt": attempt,
                            "error": error,
                            "retry_in_seconds": round(delay, 3),
                        }
                    },
                )
                if self._metrics is not None:
                    self._metrics.target_retries.labels("bulk").inc()
                job.cancelled.wait(delay)
                continue
            except PermanentError as exc:
                return self._result(job, BulkOutcome.REJECTED, None, str(exc), attempt)
            except Exception as exc:  # a worker must survive the unexpected
                # Not Target's verdict on the data: retried like an outage, and visible.
                self._crashes.caught("bulk", exc)
                error = f"{type(exc).__name__}: {exc}"
                job.cancelled.wait(self._backoff.delay(attempt, None, self._rng))
                continue
            return self._result(job, BulkOutcome.ACCEPTED, accepted, "", attempt)
        return self._result(job, BulkOutcome.CANCELLED, None, error or "cancelled", attempt)

    def _result(
        self,
        job: _Job,
        outcome: BulkOutcome,
        accepted: BulkAccepted | None,
        error: str,
        attempts: int,
    ) -> BulkResult:
        return BulkResult(
            job.batch, outcome, accepted, error, attempts, job.resubmission, self._clock.time()
        )
