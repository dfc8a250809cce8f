"""What happens once Target has answered: settling, following, resubmitting, dead-lettering.

The loop hands every finished upload (``BulkResult``) and every final batch status
(``StatusOutcome``) to ``Outcomes``, which keeps guarantees 1, 6 and 11 of
docs/guarantees.md: an accepted batch is settled and followed to completion; a rejected
one goes to the DLQ row by row (or stops the service); a stuck one is queued again (in the
one upload queue), without the rows later batches carried forward, then dead-lettered.
It is also the one owner of carry-forward releases: a batch's rows stop being carried
once it completed, failed or was cancelled. Runs on the loop's thread.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from consumer.config import Settings
from consumer.core.auditing import Auditing
from consumer.core.carry import CarryForward
from consumer.core.ledger import UnitKind, unit_kind
from consumer.core.model import BatchFile
from consumer.core.seams import BatchFollower, Rereader
from consumer.core.settling import Settling
from consumer.core.stuck_letters import (
    BatchSources,
    Decode,
    event_letter,
    row_letters,
    source_records,
    stuck_letters,
)
from consumer.core.summary import Summary
from consumer.core.uploads import UploadQueue
from consumer.errors import FatalError
from consumer.metrics import Metrics
from consumer.target.bulk import BulkOutcome, BulkResult
from consumer.target.status import FinalStatus, StatusOutcome
from consumer.target.wire import decode_batch, encode_batch, encode_cell

log = logging.getLogger("profile_sync.outcomes")


class Outcomes:
    def __init__(
        self,
        settings: Settings,
        *,
        settling: Settling,
        uploads: UploadQueue,
        carry: CarryForward | None,
        tracker: BatchFollower | None,
        metrics: Metrics | None,
        summary: Summary,
        rereader: Rereader | None = None,
        audit: Auditing | None = None,
        decode: Decode | None = None,
    ) -> None:
        """``rereader`` reads a rejected batch's source records again, so that they are
        dead-lettered as published (None: its rows are dead-lettered as JSON). ``audit``:
        told when a batch completed (its rows are read back later) or will never
        complete. ``decode``: what a source record became, to dead-letter a stuck batch's
        records (consumer/core/stuck_letters.py; None: its rows as JSON)."""
        self.settings = settings
        self.settling = settling
        self.uploads = uploads
        self.carry = carry
        self.tracker = tracker
        self.metrics = metrics
        self.summary = summary
        self.audit = audit
        self._resubmits: dict[int, int] = {}
        self.rereader = rereader
        self.decode = decode
        # Source offsets of accepted batches until they complete: a stuck one's records.
        self.sources = BatchSources()

    def release(self, batch_id: int) -> None:
        """Stop carrying ``batch_id``'s rows forward."""
        if self.carry is not None:
            self.carry.release(batch_id)
        self.sources.pop(batch_id)
        if self.audit is not None:
            self.audit.on_batch_gone(batch_id)

    def cancel(self, units: set[int]) -> None:
        """The batches among ``units`` will not settle here (rebalance, shutdown)."""
        for unit in units:
            if unit_kind(unit) is UnitKind.BATCH:
                self.uploads.cancel(unit)
                self.release(unit)

    def on_bulk_result(self, result: BulkResult) -> None:
        """A batch upload finished: settle, follow, or dead-letter it."""
        batch = result.batch
        bid = batch.batch_id
        m = self.metrics
        fields = {
            "batch_id": bid,
            "id_type": batch.id_type.value,
            "rows": batch.row_count,
            "bytes": len(batch.body),
            "attempts": result.attempts,
            "outcome": result.outcome,
            "resubmission": result.resubmission,
        }
        if result.outcome is BulkOutcome.ACCEPTED:
            assert result.accepted is not None
            if not result.resubmission:
                if self.tracker is not None and self.rereader is not None:
                    self.sources.keep(bid, self.settling.ledger.unit_offsets(bid))
                self.settling.batch_accepted(bid)
                self.summary.batches_accepted += 1
                self.summary.rows_accepted += batch.row_count
                if m is not None:
                    m.batches.labels(batch.id_type.value, "accepted").inc()
                    m.end_to_end_delay.observe(
                        max(0.0, result.finished_at - batch.oldest_occurred_at / 1000)
                    )
            fields["batch_status"] = result.accepted.batch_status_url
            log.info("batch accepted", extra={"fields": fields})
            if self.tracker is not None:
                resubmits = self._resubmits.get(bid, 0) if result.resubmission else 0
                self.tracker.track(batch, result.accepted.batch_status_url, resubmits)
            else:
                # Nobody follows batch status: acceptance is the best completion signal left.
                self.release(bid)
                self.settling.completion.completed(bid)
            return
        self.release(bid)
        if result.outcome is BulkOutcome.CANCELLED:
            if m is not None:
                m.batches.labels(batch.id_type.value, "cancelled").inc()
            log.warning("batch cancelled before it settled", extra={"fields": fields})
            return
        # rejected: Target said no for good.
        fields["error"] = result.error
        log.error("batch rejected by Target", extra={"fields": fields})
        if m is not None:
            m.batches.labels(batch.id_type.value, "rejected").inc()
        self.summary.batches_rejected += 1
        if self.settings.on_rejected == "stop":
            self.settling.abandon(bid)
            raise FatalError(f"batch {bid} rejected by Target: {result.error}")
        if not self._dead_letter_events(batch, result.error, unit=bid):
            self._dead_letter_rows(batch, "batch_rejected", result.error, unit=bid)

    def _dead_letter_events(self, batch: BatchFile, error: str, unit: int) -> bool:
        """The events of a rejected batch, as published, to the DLQ (replayable with
        ``profile-sync dlq replay``); False when they cannot be read back."""
        if self.rereader is None:
            return False
        ranges = self.settling.ledger.unit_offsets(unit)
        events = self.rereader.read(ranges) if ranges else None
        if events and self.decode is not None:  # repartition records -> their source records
            events = source_records(events, self.decode, self.rereader.read)
        if not events:
            return False
        extra = (("batch.id", str(batch.batch_id)),)
        letters = [
            event_letter(e, "batch_rejected", "PermanentError", error, extra) for e in events
        ]
        self.summary.dead_letters += len(letters)
        self.settling.dead_letter_rows(letters, unit)
        return True

    def _dead_letter_rows(
        self, batch: BatchFile, reason: str, error: str, unit: int | None
    ) -> None:
        """One dead letter per profile row of ``batch``; ``unit`` (None: a new one) settles
        when all landed."""
        id_type, rows = decode_batch(batch.body)
        extra = (("batch.id", str(batch.batch_id)),)
        letters = row_letters(id_type, rows, reason, error, extra)
        self.summary.dead_letters += len(letters)
        self.settling.dead_letter_rows(letters, unit)

    def on_status(self, outcome: StatusOutcome) -> None:
        """A batch reached a final status: release, resubmit, or dead-letter its rows."""
        m = self.metrics
        status = outcome.status
        complete = outcome.outcome is FinalStatus.COMPLETE
        if complete and self.audit is not None:
            # Queued before the counters move: a scrape that sees the batch complete sees
            # its rows waiting for their read back (nothing looks idle in between).
            self.audit.on_complete(outcome.batch, outcome.batch_id)
        if m is not None:
            m.batch_status.labels(outcome.outcome).inc()
            if status is not None:
                for label, value in (
                    ("successful", status.successful),
                    ("failed", status.failed),
                    ("not_found", status.not_found),
                ):
                    if value:
                        m.batch_updates.labels(label).inc(value)
        fields: dict[str, Any] = {"batch_id": outcome.batch_id, "outcome": outcome.outcome}
        if status is not None:
            fields.update(
                batch_size=status.batch_size,
                successful=status.successful,
                failed=status.failed,
                not_found=status.not_found,
            )
        if outcome.outcome is FinalStatus.UNKNOWN:
            # Accepted, its status forgotten by Target: never resent on that ground.
            log.info("batch status unknown, carry-forward released", extra={"fields": fields})
            self.release(outcome.batch_id)
            self._resubmits.pop(outcome.batch_id, None)
            return
        if complete:
            log.info("batch complete", extra={"fields": fields})
            self.release(outcome.batch_id)
            self.settling.completion.completed(outcome.batch_id)
            self._resubmits.pop(outcome.batch_id, None)
            return
        batch = self._still_owned(outcome.batch) if outcome.batch is not None else None
        if batch is None and outcome.batch is not None:
            # Every row was sent again by a later batch (which carried it forward).
            log.info("stuck batch superseded by later batches", extra={"fields": fields})
            self._resubmits.pop(outcome.batch_id, None)
            self.release(outcome.batch_id)
            self.settling.completion.completed(outcome.batch_id)
            return
        if batch is not None and outcome.resubmits < self.settings.status_max_resubmits:
            log.warning("batch not completing, resubmitting", extra={"fields": fields})
            if m is not None:
                m.batch_resubmissions.inc()
            self._resubmits[batch.batch_id] = outcome.resubmits + 1
            self.uploads.add_resubmission(batch)
            return
        self._resubmits.pop(outcome.batch_id, None)
        ranges = self.sources.pop(outcome.batch_id)
        self.release(outcome.batch_id)
        # Given up: dead-lettered below, or lost if its bytes were not kept (logged).
        self.settling.completion.completed(outcome.batch_id)
        if batch is None:
            log.error(
                "batch stuck and its bytes were not retained; cannot dead-letter rows",
                extra={"fields": fields},
            )
            return
        log.error("batch stuck after resubmissions, rows to the DLQ", extra={"fields": fields})
        error = f"batch status {outcome.outcome}"
        if self.rereader is None or self.decode is None:
            self._dead_letter_rows(batch, "batch_stuck", error, unit=None)
            return
        events, why = None, "its source offsets are not known (dropped for the bound, or none)"
        if ranges:
            events = self.rereader.read(ranges)
            why = "its source records could not be read back (retention, or the re-read timed out)"
        letters = stuck_letters(batch, events, self.decode, error, why, self.rereader.read)
        if events is None:
            fields["why"] = why
            log.warning("stuck batch dead-lettered as rows", extra={"fields": fields})
        self.summary.dead_letters += len(letters)
        self.settling.dead_letter_rows(letters, None)

    def _still_owned(self, batch: BatchFile) -> BatchFile | None:
        """``batch`` without the rows a later batch has sent again, None if nothing is left.

        Resending a stuck batch as it was could put older values back over what later
        batches sent. A later batch that holds the same profile carried this row forward
        (the stuck batch was pending when it was cut), so only rows whose profile was last
        sent by this batch are resent (or dead-lettered).
        """
        if self.carry is None:
            return batch
        id_type, rows = decode_batch(batch.body)
        kept = []
        for profile_id, attrs in rows:
            last = self.carry.last_batch(id_type, encode_cell(profile_id))
            if last is None or last == batch.batch_id:
                kept.append((profile_id, attrs))
        if not kept:
            return None
        if len(kept) == batch.row_count:
            return batch
        return dataclasses.replace(
            batch, body=encode_batch(id_type, kept), row_count=len(kept), trigger="resubmit"
        )
