"""The consume loop: turns intake, uploads and settling in a fixed order.

One thread owns everything that is not thread-safe (batcher, ledger, carry-forward, the
dead-letter producer). HTTP happens on worker threads (uploads, single updates, batch
status), which report back on queues this loop drains. Each ``turn``:

1. consume up to ``consume_batch_size`` records and hand them to the intake (decode ->
   map -> batcher; poison to the DLQ, nothing-to-send settled at once, URGENT ones
   offered to the single-update path);
2. cut what is due (linger, memory), and write cut files a bounded number of rows at a
   time, into the upload queue;
3. submit from the upload queue within ``MAX_IN_FLIGHT_BATCHES``;
4. drain upload results and final batch statuses into the outcomes (accepted batches
   settle, rejected ones go to the DLQ, stuck ones are queued again); hand due rows of
   completed batches to the read-back audit and judge its reads (consumer/core/auditing.py);
5. serve dead-letter confirmations (they settle their units);
6. store the settled offsets (librdkafka auto-commits stored offsets);
7. pause or resume consumption for backpressure (guarantee 7 in docs/guarantees.md);
8. save the single-update budget now and then; set the gauges once.

Rebalance and shutdown (consumer/core/rebalance.py) follow guarantees 9 and 10.
"""

from __future__ import annotations

import logging
from functools import partial

from consumer.clock import Clock
from consumer.config import Settings
from consumer.core import rebalance
from consumer.core.audit import AuditQueue
from consumer.core.auditing import Auditing, Reader
from consumer.core.batcher import Batcher
from consumer.core.budget import CallBudget
from consumer.core.carry import CarryForward
from consumer.core.gauges import set_gauges
from consumer.core.intake import Intake
from consumer.core.model import IdType
from consumer.core.outcomes import Outcomes
from consumer.core.seams import BatchFollower, Rereader, Source, Uploads
from consumer.core.settling import DeadLetterSinkFactory, Settling
from consumer.core.stuck_letters import decoder
from consumer.core.summary import Summary
from consumer.core.uploads import CutBatches, UploadQueue
from consumer.mapping import RecordMapper
from consumer.metrics import Metrics
from consumer.target.urgent import SingleUpdater

log = logging.getLogger("profile_sync.pipeline")

# How long one consume() call may block when nothing arrives: the source returns as soon
# as a record is fetched (consumer/kafka/source.py), so this is the period of an idle turn
# (linger cuts, results, settling), not a delay urgent events see.
POLL_TIMEOUT_SECONDS = 0.02
# Rows of cutting work (writing a cut file, handing its rows to carry-forward) per turn,
# plus ``CUT_ROWS_PER_RECORD`` per record the turn consumed: a turn stays short when a
# large batch is cut, and the cutting keeps pace with any intake (a file never has more
# rows than events). Cutting a 43,000-row file at once held the thread ~150 ms.
CUT_ROWS_PER_TURN = 1_000
CUT_ROWS_PER_RECORD = 1
# Consumption resumes once the buffer is back under this share of its byte bound.
RESUME_RATIO = 0.8
# How often the single-update budget is saved when it has a state file.
QUOTA_SAVE_SECONDS = 10.0


class Loop:
    def __init__(
        self,
        settings: Settings,
        *,
        source: Source,
        mapper: RecordMapper,
        batcher: Batcher,
        carry: CarryForward | None,
        uploads: Uploads,
        dead_letter_sink: DeadLetterSinkFactory,
        cut: CutBatches,
        single: SingleUpdater | None,
        tracker: BatchFollower | None,
        metrics: Metrics | None,
        clock: Clock,
        budget: CallBudget | None = None,
        rereader: Rereader | None = None,
        audit_reader: Reader | None = None,
    ) -> None:
        """``cut`` is shared with ``single`` (it skips calls for batches already cut).
        ``audit_reader``: reads profiles back for the audit; None turns the audit off."""
        self.settings = settings
        self.source = source
        self.batcher = batcher
        self.carry = carry
        self.single = single
        self.tracker = tracker
        self.metrics = metrics
        self.clock = clock
        self.budget = budget  # the tenant's bulk-API calls (consumer/core/budget.py)
        self.summary = Summary(clock)
        self.settling = Settling(dead_letter_sink)
        # Poison letters keep the record's headers (KafkaSource, OwnedSource; not the fakes).
        self.settling.headers_of = getattr(source, "headers_of", None)
        self.uploads = UploadQueue(uploads, settings.max_in_flight_batches, cut)
        self.intake = Intake(
            mapper=mapper,
            batcher=batcher,
            settling=self.settling,
            single=single,
            metrics=metrics,
            summary=self.summary,
            clock=clock,
            reading=settings.target_cell_decoding.upper(),
            max_future_skew_seconds=settings.max_future_skew_seconds,
        )
        # v1 never creates a profile: one Target does not have is then no loss.
        v1_ids = frozenset({IdType.PC_ID}) if settings.pcid_bulk_version == "v1" else frozenset()
        self.audit = (
            Auditing(
                AuditQueue(
                    settings.audit_sample_share,
                    settings.audit_settle_seconds,
                    settings.audit_max_pending,
                ),
                audit_reader,
                batcher=batcher,
                carry=carry,
                settling=self.settling,
                max_repairs=settings.audit_max_repairs,
                v1_ids=v1_ids,
                metrics=metrics,
                clock=clock,
            )
            if audit_reader is not None
            else None
        )
        self.outcomes = Outcomes(
            settings,
            settling=self.settling,
            uploads=self.uploads,
            carry=carry,
            tracker=tracker,
            metrics=metrics,
            summary=self.summary,
            rereader=rereader,
            audit=self.audit,
            decode=decoder(mapper, lambda: self.intake.owned_topic),
        )
        self.stopping = False
        # When the stop was asked for (monotonic); shutdown's budget counts from there.
        self.stop_requested_at: float | None = None
        self.paused = False
        self._last_quota_save = clock.monotonic()
        self.assignment_changed_at = clock.monotonic()
        source.on_assign = partial(rebalance.on_assign, self)
        source.on_revoke = partial(rebalance.on_revoke, self)
        source.on_lost = partial(rebalance.on_lost, self)

    def shutdown(self) -> bool:
        """Stop fetching, flush, settle, commit, close. True when everything settled."""
        return rebalance.shutdown(self)

    def turn(self, timeout: float = POLL_TIMEOUT_SECONDS) -> int:
        """One turn of the loop (steps 1-8 above); returns how many records it consumed.

        May raise ``FatalError`` (the Kafka client is unusable, or a rejected batch under
        ``ON_REJECTED=stop``).
        """
        if self.batcher.cutting:
            timeout = 0.0  # a cut is being finished: do not wait for records to go on
        records = self.source.consume(self.settings.consume_batch_size, timeout)  # 1
        if records:
            taken_at = self.clock.monotonic()
            self.intake.take(records)
        now = self.clock.monotonic()
        self.cut(now, work=CUT_ROWS_PER_TURN + CUT_ROWS_PER_RECORD * len(records))  # 2
        self.uploads.submit()  # 3
        self.drain_results()  # 4
        if self.audit is not None:
            self.audit.turn(now)
        self.settling.poll()  # 5
        self.settling.store(self.source)  # 6
        self._backpressure()  # 7
        if self.single is not None and now - self._last_quota_save >= QUOTA_SAVE_SECONDS:  # 8
            self._last_quota_save = now
            self.single.save_state()
        if self.metrics is not None:
            set_gauges(self, self.metrics, now)
            if records:
                self.metrics.loop_turn.observe(self.clock.monotonic() - taken_at)
        return len(records)

    def cut(self, now: float, trigger: str = "", work: int | None = None) -> None:
        """Cut due batches (every non-empty one with ``trigger``) into the upload queue.

        ``work``: rows of cutting work to do now (``Batcher.take_ready``); None, or a
        ``trigger``, finishes every cut."""
        batcher = self.batcher
        if trigger:
            batcher.cut_all(trigger)
        else:
            budget = self.budget
            # Linger, unless the budget has no call for it now: then the batch grows.
            if budget is None or budget.room(now) > self.uploads.busy + batcher.cutting:
                batcher.cut_due(now)
            if batcher.open_bytes >= self.settings.buffer_max_bytes:
                batcher.cut_all("memory")
        ready = batcher.take_ready(None if trigger else work)
        for batch in ready:
            if self.metrics is not None:
                t = batch.id_type.value
                self.metrics.batches_flushed.labels(t, batch.trigger).inc()
                self.metrics.batch_rows.labels(t).observe(batch.row_count)
                self.metrics.batch_bytes.labels(t).observe(len(batch.body))
                self.metrics.batch_events.labels(t).inc(batch.event_count)
            log.info(
                "batch cut",
                extra={
                    "fields": {
                        "batch_id": batch.batch_id,
                        "id_type": batch.id_type.value,
                        "rows": batch.row_count,
                        "events": batch.event_count,
                        "bytes": len(batch.body),
                        "trigger": batch.trigger,
                    }
                },
            )
        self.uploads.add_cut(ready)

    def drain_results(self) -> None:
        """Hand every finished upload and final batch status to the outcomes."""
        while (result := self.uploads.next_result()) is not None:
            self.outcomes.on_bulk_result(result)
        if self.tracker is not None:
            while (status := self.tracker.next_outcome()) is not None:
                self.outcomes.on_status(status)

    def drained(self) -> bool:
        """Nothing buffered, nothing waiting or in flight, every consumed offset settled."""
        return self.batcher.buffered_rows == 0 and not self.uploads.busy and self.settling.drained()

    def _backpressure(self) -> None:
        limit = self.settings.buffer_max_bytes
        buffered = self.batcher.buffered_bytes
        waiting = self.uploads.waiting
        # Carry-forward at its bound with only pending rows left: wait for completions.
        carry_full = self.carry is not None and self.carry.over_bound
        if (waiting or buffered >= limit or carry_full) and not self.paused:
            self.paused = True
            self.source.pause_all()
            log.info(
                "consumption paused (backpressure)",
                extra={
                    "fields": {
                        "outbox": waiting,
                        "buffered_bytes": buffered,
                        "carry_forward_full": carry_full,
                    }
                },
            )
        elif self.paused and not waiting and not carry_full and buffered < limit * RESUME_RATIO:
            self.paused = False
            self.source.resume_all()
            log.info("consumption resumed")
