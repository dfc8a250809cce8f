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
from consumer.core.model import BatchFile
from consumer.errors import TargetError
from consumer.target.api import BatchStatus

log = logging.getLogger("profile_sync.status")


class FinalStatus(StrEnum):
    """How following a batch ended (the value is the ``outcome`` label and log field)."""

    COMPLETE = "complete"
    STUCK = "stuck"
    TIMEOUT = "timeout"  # not final within the maximum age


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    batch_id: int
    outcome: FinalStatus
    status: BatchStatus | None
    batch: BatchFile | None  # the retained bytes, None if dropped for the byte budget
    resubmits: int


class _Tracked:
    __slots__ = ("accepted_at", "batch", "batch_id", "interval", "resubmits", "url")

    def __init__(self, batch: BatchFile, url: str, resubmits: int, now: float, interval: float):
        self.batch_id = batch.batch_id
        self.batch: BatchFile | None = batch
        self.url = url
        self.resubmits = resubmits
        self.accepted_at = now
        self.interval = interval


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
    ) -> None:
        self._get_status = get_status
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
        self._thread = threading.Thread(target=self._run, name="batch-status", daemon=True)
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

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=5)

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
            self._poll(item)

    def _poll(self, item: _Tracked) -> None:
        status: BatchStatus | None = None
        try:
            status = self._get_status(item.url)
        except TargetError as exc:
            log.warning(
                "batch status poll failed",
                extra={"fields": {"batch_id": item.batch_id, "error": str(exc)}},
            )
        now = self._clock()
        final = None
        if status is not None and status.status in ("complete", "stuck"):
            final = FinalStatus(status.status)
        elif now - item.accepted_at >= self._max_age:
            final = FinalStatus.TIMEOUT
        with self._lock:
            if final is None:
                item.interval = min(self._poll_max, item.interval * 2)
                self._push(now + item.interval, item)
                return
            batch = self._release(item)
        self.outcomes.put(StatusOutcome(item.batch_id, final, status, batch, item.resubmits))
