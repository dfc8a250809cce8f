"""The consume loop: Kafka -> decode -> batch -> Target, committing only what is settled.

One thread owns the Kafka consumer and everything that is not thread-safe (batcher,
ledger, carry-forward, DLQ producer). HTTP happens on worker threads (bulk sender,
single updater, status tracker), which report back on queues this loop drains. Each turn:

1. take up to ``consume_batch_size`` records and run them through decode -> validate ->
   batcher (poison to the DLQ, empty events settled at once, URGENT ones offered to the
   single-update path);
2. cut what is due (linger, memory), submit cut batches within the in-flight bound;
3. drain results: accepted batches settle their offsets, rejected ones go to the DLQ;
4. store the settled offsets (librdkafka auto-commits stored offsets);
5. pause or resume partitions for backpressure; update metrics once.

Rebalance and shutdown follow guarantees 9 and 10 in ``docs/guarantees.md``.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any

from consumer.clock import Clock
from consumer.config import Settings
from consumer.core.batcher import STALE, TOO_LARGE, Batcher
from consumer.core.carry import CarryForward
from consumer.core.decode import Decoder
from consumer.core.ledger import SETTLED, Ledger
from consumer.core.model import BatchFile, DeadLetter, Priority, TopicPartition
from consumer.core.outcomes import Outcomes, Summary
from consumer.core.validate import to_update
from consumer.errors import PoisonError
from consumer.kafka.dlq import DeadLetterQueue
from consumer.kafka.source import KafkaSource
from consumer.metrics import Metrics
from consumer.target.bulk import BulkResult, BulkSender
from consumer.target.status import StatusTracker
from consumer.target.urgent import SingleUpdater

log = logging.getLogger("profile_sync.pipeline")

# How long one consume() call may block. librdkafka waits this long unless a whole
# consume batch is ready, so it bounds the latency a trickle of urgent events sees
# (bench/bench_urgent.py: p50 56 ms at 100 ms, 14 ms at 20 ms); an idle turn is cheap.
POLL_TIMEOUT_SECONDS = 0.02
# Consumption resumes once the buffer is back under this share of its byte bound.
RESUME_RATIO = 0.8
# How long one wait for an upload result lasts while settling (revoke, shutdown); DLQ
# delivery reports are served between waits.
SETTLE_WAIT_SECONDS = 0.02
# How often the single-update budget is saved when it has a state file.
QUOTA_SAVE_SECONDS = 10.0


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        source: KafkaSource,
        decoder: Decoder,
        batcher: Batcher,
        carry: CarryForward | None,
        sender: BulkSender,
        dlq_factory: Callable[[Callable[[int], None]], DeadLetterQueue],
        single: SingleUpdater | None,
        tracker: StatusTracker | None,
        metrics: Metrics | None,
        clock: Clock,
        on_turn: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.decoder = decoder
        self.batcher = batcher
        self.carry = carry
        self.sender = sender
        self.single = single
        self.tracker = tracker
        self.metrics = metrics
        self.clock = clock
        self.on_turn = on_turn
        self.ledger = Ledger()
        self.dlq = dlq_factory(self.ledger.settle)
        self.summary = Summary()
        self.outcomes = Outcomes(
            settings,
            ledger=self.ledger,
            dlq=self.dlq,
            sender=sender,
            carry=carry,
            tracker=tracker,
            metrics=metrics,
            summary=self.summary,
            new_dlq_unit=self._dlq_unit,
        )
        self.outbox: list[BatchFile] = []
        self.in_flight: dict[int, BatchFile] = {}
        self.stopping = False
        self._next_dlq_unit = -1
        self._paused = False
        self._last_quota_save = clock.monotonic()
        self._cut_ids: set[int] = set()
        self.assignment_changed_at = clock.monotonic()
        source.on_revoke = self._on_revoke
        source.on_lost = self._on_lost
        source.on_assign = self._on_assign

    # ------------------------------------------------------------------ the loop

    def run_until_stopped(self) -> None:
        while not self.stopping:
            self.turn()

    def turn(self, timeout: float = POLL_TIMEOUT_SECONDS) -> int:
        """One turn of the loop; returns how many records it consumed."""
        messages = self.source.consume(self.settings.consume_batch_size, timeout)
        if messages:
            self._process(messages)
        self._housekeeping()
        self.on_turn()
        return len(messages)

    def _dlq_unit(self) -> int:
        unit = self._next_dlq_unit
        self._next_dlq_unit -= 1
        return unit

    def _process(self, messages: list[Any]) -> None:
        now = self.clock.monotonic()
        wall = self.clock.time()
        decoder = self.decoder
        batcher = self.batcher
        ledger = self.ledger
        single = self.single
        consumed: dict[tuple[str, str], int] = {}
        bulk = skipped = poison = urgent = 0
        tps: dict[tuple[str, int], TopicPartition] = {}
        for msg in messages:
            if msg.error() is not None:
                self.source.handle_error(msg.error())
                continue
            topic = msg.topic()
            key = (topic, msg.partition())
            tp = tps.get(key)
            if tp is None:
                tp = tps[key] = TopicPartition(topic, key[1])
            offset = msg.offset()
            value = msg.value()
            try:
                record = decoder.decode(value)
                update = to_update(record, tp, offset)
            except PoisonError as exc:
                poison += 1
                ck = (topic, "unknown")
                consumed[ck] = consumed.get(ck, 0) + 1
                self._dead_letter_poison(exc, msg, tp, offset)
                continue
            source_label = record.get("source") or "OTHER"
            ck = (topic, source_label)
            consumed[ck] = consumed.get(ck, 0) + 1
            if update is None:
                skipped += 1
                ledger.track(tp, offset, SETTLED)
                continue
            batch_id = batcher.add(update, now)
            if batch_id == STALE:
                # Every value is older than what was already sent: nothing to do.
                skipped += 1
                ledger.track(tp, offset, SETTLED)
                continue
            if batch_id == TOO_LARGE:
                poison += 1
                self._dead_letter_poison(
                    PoisonError("profile_too_large", "row would exceed Target's 64 KB per profile"),
                    msg,
                    tp,
                    offset,
                    stage="validate",
                )
                continue
            bulk += 1
            ledger.track(tp, offset, batch_id)
            if update.priority is Priority.URGENT and single is not None:
                fresh = batcher.winning_attributes(update)
                if len(fresh) < len(update.attributes):
                    update = update._replace(attributes=fresh)
                outcome = single.offer(update, batch_id, wall) if fresh else "skipped_stale"
                if outcome == "queued":
                    urgent += 1
                elif self.metrics is not None:
                    self.metrics.single_updates.labels(outcome).inc()
        s = self.summary
        if s.first_record_at is None:
            s.first_record_at = now
        s.last_record_at = time.monotonic()
        s.events_consumed += len(messages)
        s.events_bulk += bulk
        s.events_skipped += skipped
        s.events_poison += poison
        s.single_queued += urgent
        m = self.metrics
        if m is not None:
            for (topic, source_label), n in consumed.items():
                m.events_consumed.labels(topic, source_label).inc(n)
            if bulk:
                m.events_routed.labels("bulk").inc(bulk)
            if urgent:
                m.events_routed.labels("single").inc(urgent)
            if skipped:
                m.events_skipped.inc(skipped)

    def _dead_letter_poison(
        self, exc: PoisonError, msg: Any, tp: TopicPartition, offset: int, stage: str = ""
    ) -> None:
        stage = stage or exc.stage
        if self.metrics is not None:
            self.metrics.poison_events.labels(stage, exc.reason).inc()
        unit = self._dlq_unit()
        self.ledger.track(tp, offset, unit)
        self.dlq.send(
            DeadLetter(
                key=msg.key(),
                value=msg.value(),
                reason=exc.reason,
                stage=stage,
                error_class=type(exc).__name__,
                message=exc.detail,
                tp=tp,
                offset=offset,
            ),
            unit,
        )
        self.summary.dead_letters += 1

    # ------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        now = self.clock.monotonic()
        self.batcher.cut_due(now)
        if self.batcher.buffered_bytes >= self.settings.buffer_max_bytes:
            self.batcher.cut_all("memory")
        self._take_ready()
        self._submit()
        self._drain_results()
        self.dlq.poll()
        self._store_offsets()
        self._backpressure()
        if self.single is not None and now - self._last_quota_save >= QUOTA_SAVE_SECONDS:
            self._last_quota_save = now
            self.single.save_state()
        if self.metrics is not None:
            self._gauges(now)

    def _take_ready(self) -> None:
        ready = self.batcher.take_ready()
        for batch in ready:
            self._cut_ids.add(batch.batch_id)
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
        self.outbox.extend(ready)

    def drained(self) -> bool:
        """Nothing buffered, nothing in flight, every consumed offset settled."""
        return (
            self.batcher.buffered_rows == 0
            and not self.outbox
            and not self.in_flight
            and self.dlq.pending == 0
            and not self.ledger.pending_units()
        )

    def is_superseded(self, batch_id: int) -> bool:
        """True once ``batch_id`` was cut: its bulk upload carries the urgent event."""
        return batch_id in self._cut_ids

    def _submit(self, force: bool = False) -> None:
        limit = self.settings.max_in_flight_batches
        while self.outbox and (force or len(self.in_flight) < limit):
            batch = self.outbox.pop(0)
            self.in_flight[batch.batch_id] = batch
            self.sender.submit(batch)

    def _drain_results(self) -> None:
        while True:
            try:
                result = self.sender.results.get_nowait()
            except queue.Empty:
                break
            self._on_bulk_result(result)
        if self.tracker is not None:
            while True:
                try:
                    outcome = self.tracker.outcomes.get_nowait()
                except queue.Empty:
                    break
                self.outcomes.on_status(outcome)

    def _on_bulk_result(self, result: BulkResult) -> None:
        self.in_flight.pop(result.batch.batch_id, None)
        self._cut_ids.discard(result.batch.batch_id)
        self.outcomes.on_bulk_result(result)

    def _store_offsets(self) -> None:
        offsets = self.ledger.take_committable()
        if offsets:
            self.source.store_offsets(offsets)

    def _backpressure(self) -> None:
        over = bool(self.outbox) or (self.batcher.buffered_bytes >= self.settings.buffer_max_bytes)
        if over and not self._paused:
            self._paused = True
            self.source.pause_all()
            log.info(
                "consumption paused (backpressure)",
                extra={
                    "fields": {
                        "outbox": len(self.outbox),
                        "buffered_bytes": self.batcher.buffered_bytes,
                    }
                },
            )
        elif (
            self._paused
            and not self.outbox
            and (self.batcher.buffered_bytes < self.settings.buffer_max_bytes * RESUME_RATIO)
        ):
            self._paused = False
            self.source.resume_all()
            log.info("consumption resumed")

    def _gauges(self, now: float) -> None:
        m = self.metrics
        assert m is not None
        for id_type, rows in self.batcher.buffered_rows_by_type().items():
            m.buffer_rows.labels(id_type.value).set(rows)
        m.buffer_bytes.set(self.batcher.buffered_bytes)
        started = self.batcher.oldest_started_at()
        m.oldest_pending_age.set(0 if started is None else now - started)
        m.batches_in_flight.set(len(self.in_flight) + len(self.outbox))
        m.partitions_paused.set(len(self.source.assigned) if self._paused else 0)
        m.partitions_assigned.set(len(self.source.assigned))
        if self.carry is not None:
            m.carry_forward_profiles.set(self.carry.pending_profiles)
            evicted = self.carry.evictions
            if evicted:
                m.carry_forward_evictions.inc(evicted)
                self.carry.evictions = 0
        if self.single is not None:
            m.single_budget_remaining.set(self.single.budget.remaining(self.clock.time()))
            m.single_budget_total.set(self.single.budget.limit)
        if self.tracker is not None:
            m.batches_tracked.set(self.tracker.tracked)
        m.loop_last_turn.set(self.clock.time())

    # ------------------------------------------------------------------ settling

    def settle_all(self, deadline: float, tps: set[TopicPartition] | None = None) -> bool:
        """Flush the buffers and wait (until ``deadline``, monotonic) for ``tps`` to settle.

        Runs inside rebalance callbacks (that is, inside the consumer's own consume() or
        close()) and at shutdown, so it must never call the consumer: it waits on the
        sender's results and serves DLQ reports itself. Units that can never settle (a
        rejected batch when the service is stopping for it) are not waited for.
        Returns True when nothing of ``tps`` is pending.
        """
        self.batcher.cut_all("revoke" if tps is not None else "shutdown")
        self._take_ready()
        self._submit(force=True)
        while True:
            self._drain_results()
            self.dlq.poll()
            self._store_offsets()
            if not self.ledger.pending_units(tps) - self.outcomes.abandoned:
                return True
            if self.clock.monotonic() >= deadline:
                return False
            try:
                result = self.sender.results.get(timeout=SETTLE_WAIT_SECONDS)
            except queue.Empty:
                continue
            self._on_bulk_result(result)

    def _cancel_units(self, units: set[int]) -> None:
        for unit in units:
            if unit > 0:
                self.sender.cancel(unit)
                if self.carry is not None:
                    self.carry.release(unit)

    # ------------------------------------------------------------------ rebalance

    def _on_assign(self, tps: set[TopicPartition]) -> None:
        self.assignment_changed_at = self.clock.monotonic()
        if self.metrics is not None:
            self.metrics.rebalances.labels("assign").inc()
        log.info(
            "partitions assigned",
            extra={"fields": {"partitions": sorted(f"{t}[{p}]" for t, p in tps)}},
        )
        if self._paused:
            self.source.pause(tps)

    def _on_revoke(self, tps: set[TopicPartition]) -> None:
        self.assignment_changed_at = self.clock.monotonic()
        if self.metrics is not None:
            self.metrics.rebalances.labels("revoke").inc()
        timeout = self.settings.revoke_timeout_seconds
        if self.stopping:
            timeout = min(timeout, 1.0)  # shutdown already flushed and waited
        settled = self.settle_all(self.clock.monotonic() + timeout, tps)
        self.source.commit_sync()
        leftover = self.ledger.pending_units(tps)
        if not settled and leftover:
            # Rows that could not settle in time are dropped uncommitted: the new owner
            # re-reads them. Batches that also hold retained partitions' rows are
            # cancelled too, so those partitions are rewound to their committed offsets.
            retained = self.source.assigned - tps
            shared = {tp for tp in retained if self.ledger.pending_units({tp}) & leftover}
            self._cancel_units(leftover)
            if shared:
                self.source.request_rewind(shared)
                self.ledger.forget(shared)
            log.warning(
                "revoked partitions did not settle in time; left for the new owner",
                extra={"fields": {"batches": sorted(u for u in leftover if u > 0)}},
            )
        self.ledger.forget(tps)
        log.info(
            "partitions revoked",
            extra={
                "fields": {"partitions": sorted(f"{t}[{p}]" for t, p in tps), "settled": settled}
            },
        )

    def _on_lost(self, tps: set[TopicPartition]) -> None:
        if self.metrics is not None:
            self.metrics.rebalances.labels("lost").inc()
        leftover = self.ledger.pending_units(tps)
        self._cancel_units(leftover)
        retained = self.source.assigned - tps
        shared = {tp for tp in retained if self.ledger.pending_units({tp}) & leftover}
        if shared:
            self.source.request_rewind(shared)
            self.ledger.forget(shared)
        self.ledger.forget(tps)
        log.warning(
            "partitions lost (session timed out); uncommitted work dropped",
            extra={"fields": {"partitions": sorted(f"{t}[{p}]" for t, p in tps)}},
        )

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> bool:
        """Stop fetching, flush, settle, commit, close. True when everything settled."""
        self.stopping = True
        deadline = self.clock.monotonic() + self.settings.shutdown_timeout_seconds
        self.source.pause_all()
        # Reserve a little of the budget for committing and leaving the group.
        settled = self.settle_all(deadline - min(2.0, self.settings.shutdown_timeout_seconds / 5))
        self.source.commit_sync()
        if not settled:
            leftover = self.ledger.pending_units()
            self._cancel_units(leftover)
            log.warning(
                "shutdown: some batches did not settle in time; they will be re-read",
                extra={"fields": {"batches": sorted(u for u in leftover if u > 0)}},
            )
        self.sender.close()
        if self.single is not None:
            self.single.close()
        if self.tracker is not None:
            self.tracker.close()
        self.dlq.flush(max(0.1, deadline - self.clock.monotonic()))
        self.source.close()
        return settled
