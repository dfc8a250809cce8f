"""Where records enter the core: decode -> validate -> batcher, and the urgent path.

Every consumed offset is tracked with ``Settling`` against the unit that settles it: the
batch its row went into, a dead letter (poison, guarantee 8 in docs/guarantees.md), or
settled at once (nothing to send: no attribute, or stale, guarantee 2). URGENT events are
also offered to the single-update path (guarantee 5). Counters and metrics are added once
per call, not per record. Runs on the loop's thread.
"""

from __future__ import annotations

from consumer.clock import Clock
from consumer.core.batcher import Batcher, Refused
from consumer.core.decode import Decoder
from consumer.core.ledger import SETTLED
from consumer.core.model import DeadLetter, Priority, TopicPartition
from consumer.core.seams import Record
from consumer.core.settling import Settling
from consumer.core.summary import Summary
from consumer.core.validate import to_update
from consumer.errors import PoisonError
from consumer.metrics import Metrics
from consumer.target.urgent import SingleOutcome, SingleUpdater


class Intake:
    def __init__(
        self,
        *,
        decoder: Decoder,
        batcher: Batcher,
        settling: Settling,
        single: SingleUpdater | None,
        metrics: Metrics | None,
        summary: Summary,
        clock: Clock,
    ) -> None:
        self.decoder = decoder
        self.batcher = batcher
        self.settling = settling
        self.single = single
        self.metrics = metrics
        self.summary = summary
        self.clock = clock

    def take(self, records: list[Record]) -> None:
        """Run ``records`` (in consumption order) into the batcher, DLQ or urgent path."""
        now = self.clock.monotonic()
        wall = self.clock.time()
        decode = self.decoder.decode
        add = self.batcher.add
        track = self.settling.track
        single = self.single
        consumed: dict[tuple[str, str], int] = {}
        bulk = skipped = poison = urgent = 0
        tps: dict[tuple[str, int], TopicPartition] = {}
        for rec in records:
            topic, partition, offset, _key, value, _timestamp = rec
            key = (topic, partition)
            tp = tps.get(key)
            if tp is None:
                tp = tps[key] = TopicPartition(topic, partition)
            try:
                event = decode(value)
                update = to_update(event, tp, offset)
            except PoisonError as exc:
                poison += 1
                ck = (topic, "unknown")
                consumed[ck] = consumed.get(ck, 0) + 1
                self._dead_letter(exc, rec, tp)
                continue
            source_label = event.get("source") or "OTHER"
            ck = (topic, source_label)
            consumed[ck] = consumed.get(ck, 0) + 1
            if update is None:
                skipped += 1
                track(tp, offset, SETTLED)
                continue
            batch_id = add(update, now)
            if not isinstance(batch_id, int):  # no row (rare): one check on the hot path
                if batch_id is Refused.STALE:
                    # Every value is older than what was already sent: nothing to do.
                    skipped += 1
                    track(tp, offset, SETTLED)
                    continue
                poison += 1  # Refused.TOO_LARGE
                self._dead_letter(
                    PoisonError("profile_too_large", "row would exceed Target's 64 KB per profile"),
                    rec,
                    tp,
                    stage="validate",
                )
                continue
            bulk += 1
            track(tp, offset, batch_id)
            if update.priority is Priority.URGENT and single is not None:
                fresh = self.batcher.winning_attributes(update)
                if len(fresh) < len(update.attributes):
                    update = update._replace(attributes=fresh)
                outcome = (
                    single.offer(update, batch_id, wall) if fresh else SingleOutcome.SKIPPED_STALE
                )
                if outcome is SingleOutcome.QUEUED:
                    urgent += 1
                elif self.metrics is not None:
                    self.metrics.single_updates.labels(outcome).inc()
        s = self.summary
        if s.first_record_at is None:
            s.first_record_at = now
        s.last_record_at = self.clock.monotonic()
        s.events_consumed += len(records)
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

    def _dead_letter(
        self, exc: PoisonError, rec: Record, tp: TopicPartition, stage: str = ""
    ) -> None:
        stage = stage or exc.stage
        if self.metrics is not None:
            self.metrics.poison_events.labels(stage, exc.reason).inc()
        self.settling.dead_letter_record(
            DeadLetter(
                key=rec.key,
                value=rec.value,
                reason=exc.reason,
                stage=stage,
                error_class=type(exc).__name__,
                message=exc.detail,
                tp=tp,
                offset=rec.offset,
            )
        )
        self.summary.dead_letters += 1
