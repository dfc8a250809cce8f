"""The one queue every submission to Target's Bulk API goes through.

Cut batches and resubmissions of stuck batches alike wait in one FIFO outbox and are
handed to the ``Uploads`` seam (consumer/core/seams.py) only while fewer than
``MAX_IN_FLIGHT_BATCHES`` are in flight (guarantee 7 in docs/guarantees.md: a non-empty
outbox is what pauses consumption). Settling and shutdown may force the outbox out past
the bound, since nothing more is consumed then.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from consumer.core.model import BatchFile
from consumer.core.seams import Uploads as UploadsSeam

if TYPE_CHECKING:
    from consumer.target.bulk import BulkResult


class CutBatches:
    """Ids of batches cut and not yet finished uploading.

    Shared, read-only, with the single-update workers: an urgent event whose batch is
    here already travels with its bulk upload, so its single call is skipped. Written
    only by ``UploadQueue`` on the loop's thread; membership tests from other threads
    are safe on a set.
    """

    def __init__(self) -> None:
        self._ids: set[int] = set()

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self._ids

    def add(self, batch_id: int) -> None:
        self._ids.add(batch_id)

    def discard(self, batch_id: int) -> None:
        self._ids.discard(batch_id)


class UploadQueue:
    def __init__(self, uploads: UploadsSeam, max_in_flight: int, cut: CutBatches) -> None:
        self._uploads = uploads
        self._max_in_flight = max_in_flight
        self._cut = cut
        self._outbox: deque[tuple[BatchFile, bool]] = deque()
        self._in_flight: dict[int, BatchFile] = {}

    @property
    def waiting(self) -> int:
        """Batches in the outbox, not yet handed to the uploader."""
        return len(self._outbox)

    @property
    def busy(self) -> int:
        """Batches waiting or in flight (the ``batches_in_flight`` gauge)."""
        return len(self._outbox) + len(self._in_flight)

    def add_cut(self, batches: list[BatchFile]) -> None:
        for batch in batches:
            self._cut.add(batch.batch_id)
            self._outbox.append((batch, False))

    def add_resubmission(self, batch: BatchFile) -> None:
        """A stuck batch sent again: it waits its turn like any other."""
        self._outbox.append((batch, True))

    def submit(self, force: bool = False) -> None:
        """Hand waiting batches to the uploader, within the in-flight bound unless ``force``."""
        while self._outbox and (force or len(self._in_flight) < self._max_in_flight):
            batch, resubmission = self._outbox.popleft()
            self._in_flight[batch.batch_id] = batch
            self._uploads.submit(batch, resubmission)

    def next_result(self, timeout: float = 0.0) -> BulkResult | None:
        """A finished upload (waiting up to ``timeout``), no longer counted in flight."""
        result = self._uploads.next_result(timeout)
        if result is not None:
            batch_id = result.batch.batch_id
            self._in_flight.pop(batch_id, None)
            self._cut.discard(batch_id)
        return result

    def cancel(self, batch_id: int) -> None:
        self._uploads.cancel(batch_id)

    def close(self) -> None:
        self._uploads.close()
