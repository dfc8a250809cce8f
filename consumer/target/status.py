"""Following every accepted batch to completion through its batchStatus URL
(guarantee 11 in docs/guarantees.md).

A background thread polls each batch's status (with ``showDetails=true``) on a backoff
schedule until it is ``complete``, ``stuck`` or older than the maximum age, and reports the
final outcome with Target's counts on a queue the consume loop drains. The loop decides
what follows: release carry-forward memory, resubmit a stuck batch from its retained
bytes, or dead-letter its rows.

Batch bytes are retained for resubmission within a byte budget; past it the oldest
batches lose their bytes (they are still followed, but can no longer be resubmitted).
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from consumer.clock import Clock, SystemClock
from consumer.core.budget import CallKind
from consumer.core.model import BatchFile
from consumer.errors import TargetError
from consumer.target.api import BatchStatus, StatusUnknown
from consumer.target.gate import BudgetGate
from consumer.workers import Crashes

log = logging.getLogger("profile_sync.status")


# How long close() waits for the worker threads. They are daemons, so nothing is lost by
# not waiting for a call still on the wire; waiting longer would break the shutdown
# timeout (guarantee 10 in docs/guarantees.md).
CLOSE_JOIN_SECONDS = 0.5


class FinalStatus(StrEnum):
    """How following a batch ended (the value is the ``outcome`` label and log field)."""

    COMPLETE = "complete"
    STUCK = "stuck"
    TIMEOUT = "timeout"  # not final within the maximum age
    UNKNOWN = "unknown"  # the status URL stopped answering (Target keeps few statuses)


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    batch_id: int
    outcome: FinalStatus
    status: BatchStatus | None
    batch: BatchFile | None  # the retained bytes, None if dropped for the byte budget
    resubmits: int


class _Tracked:
    __slots__ = ("accepted_at", "batch", "batch_id", "interval", "resubmits", "unknown", "url")

    def __init__(self, batch: BatchFile, url: str, resubmits: int, now: float, interval: float):
        self.batch_id = batch.batch_id
        self.batch: BatchFile | None = batch
        self.url = url
        self.resubmits = resubmits
        self.accepted_at = now
        self.interval = interval
        self.unknown = False


class StatusTracker:
    def __init__(
        self,
        get_status: Callable[[str], BatchStatus],
        *,
        poll_initial: float,
        poll_max: float,
        max_age: float,
        retain_max_bytes: int,
        clock: Clock | None = None,
        gate: BudgetGate | None = None,
        unknown_release: float = 3600.0,
        crashes: Crashes | None = None,
    ) -> None:
        """``gate``: polls take what uploads leave of the call budget. A batch whose
        status stops answering ends ``UNKNOWN`` ``unknown_release`` seconds after its
        acceptance (its rows are carried forward until then)."""
        self._get_status = get_status
        self._gate = gate
        self._unknown_release = unknown_release
        self._poll_initial = poll_initial
        self._poll_max = poll_max
        self._max_age = max_age
        self._retain_max_bytes = retain_max_bytes
        self._clock = (clock or SystemClock()).monotonic
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _Tracked]] = []
        self._seq = 0
        self._retained: dict[int, _Tracked] = {}  # insertion order = age
        self._retained_bytes = 0
        self._stopping = False
        self.outcomes: queue.Queue[StatusOutcome] = queue.Queue()
        self._crashes = crashes or Crashes()
        self._thread = self._crashes.thread("status", self._run, "batch-status")
        self._thread.start()

    @property
    def tracked(self) -> int:
        with self._lock:
            return len(self._heap)

    def next_outcome(self) -> StatusOutcome | None:
        try:
            return self.outcomes.get_nowait()
        except queue.Empty:
            return None

    def track(self, batch: BatchFile, url: str, resubmits: int = 0) -> None:
        if not url:
            log.warning(
                "accepted batch has no batchStatus URL",
                extra={"fields": {"batch_id": batch.batch_id}},
            )
            return
        now = self._clock()
        item = _Tracked(batch, url, resubmits, now, self._poll_initial)
        with self._lock:
            self._retain(item)
            self._push(now + self._poll_initial, item)
            self._wake.notify()

    def close(self, timeout: float = CLOSE_JOIN_SECONDS) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=timeout)

    def _retain(self, item: _Tracked) -> None:
        assert item.batch is not None
        self._retained[item.batch_id] = item
        self._retained_bytes += len(item.batch.body)
        while self._retained_bytes > self._retain_max_bytes and self._retained:
            oldest_id = next(iter(self._retained))
            oldest = self._retained.pop(oldest_id)
            if oldest.batch is not None:
                self._retained_bytes -= len(oldest.batch.body)
                oldest.batch = None

    def _release(self, item: _Tracked) -> BatchFile | None:
        batch = item.batch
        if self._retained.pop(item.batch_id, None) is not None and batch is not None:
            self._retained_bytes -= len(batch.body)
        return batch

    def _push(self, when: float, item: _Tracked) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, item))

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    if self._heap and self._heap[0][0] <= self._clock():
                        break
                    timeout = self._heap[0][0] - self._clock() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _, _, item = heapq.heappop(self._heap)
            if item.unknown:
                self.outcomes.put(
                    StatusOutcome(item.batch_id, FinalStatus.UNKNOWN, None, None, item.resubmits)
                )
                continue
            if self._gate is not None:
                delay = self._gate.try_take(CallKind.POLL)
                if delay > 0:  # the budget says wait: poll this one later
                    with self._lock:
                        self._push(self._clock() + delay, item)
                    continue
            self._poll(item)

    def _poll(self, item: _Tracked) -> None:
        status: BatchStatus | None = None
        gate = self._gate
        try:
            if gate is None:
                status = self._get_status(item.url)
            else:
                status = gate.call(CallKind.POLL, lambda: self._get_status(item.url))
        except StatusUnknown as exc:
            self._expired(item, exc)
            return
        except TargetError as exc:
            log.warning(
                "batch status poll failed",
                extra={"fields": {"batch_id": item.batch_id, "error": str(exc)}},
            )
        except Exception as exc:  # the tracker must survive the unexpected
            self._crashes.caught("status", exc)
        now = self._clock()
        final = None
        if status is not None and status.status in ("complete", "stuck"):
            final = FinalStatus(status.status)
        elif now - item.accepted_at >= self._max_age:
            # Still "incomplete" after the maximum age: treated like stuck. No answer at
            # all (polls failing or starved by the call budget): the status is unknown,
            # which is never a reason to upload again (guarantee 11 in docs/guarantees.md).
            final = FinalStatus.TIMEOUT if status is not None else FinalStatus.UNKNOWN
        with self._lock:
            if final is None:
                item.interval = min(self._poll_max, item.interval * 2)
                self._push(now + item.interval, item)
                return
            batch = self._release(item)
        self.outcomes.put(StatusOutcome(item.batch_id, final, status, batch, item.resubmits))

    def _expired(self, item: _Tracked, exc: StatusUnknown) -> None:
        """The status no longer answers: normal (Target keeps few). Logged once; the
        outcome ``UNKNOWN`` follows once the carry-forward release time has passed."""
        log.warning(
            "batch status no longer answered: status unknown (not resent)",
            extra={"fields": {"batch_id": item.batch_id, "error": str(exc)}},
        )
        with self._lock:
            self._release(item)  # never resent on this ground: its bytes are not needed
            item.batch = None
            item.unknown = True
            self._push(item.accepted_at + self._unknown_release, item)
            self._wake.notify()
