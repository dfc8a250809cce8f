"""Where records enter the core: decode -> map -> batcher, and the urgent path.

Each record is decoded and mapped by its topic's mapping (consumer/mapping, docs/mapping.md;
the ``ProfileChange`` contract is the built-in one): a profile update, a skip (a filter,
a Debezium delete or tombstone: settled at once, counted by reason), or poison.
Every consumed offset is tracked with ``Settling`` against the unit that settles it: the
batch its row went into, a dead letter (poison, guarantee 8 in docs/guarantees.md), or
settled at once (nothing to send: no attribute, or stale, guarantee 2). URGENT events are
also offered to the single-update path (guarantee 5). Counters and metrics are added once
per call, not per record. Runs on the loop's thread.
"""

from __future__ import annotations

from consumer.clock import Clock
from consumer.core import internal_format
from consumer.core.batcher import Batcher, Refused
from consumer.core.held import too_large_detail
from consumer.core.ledger import SETTLED
from consumer.core.model import DeadLetter, Priority, ProfileUpdate, TopicPartition
from consumer.core.seams import Record
from consumer.core.settling import Settling
from consumer.core.summary import Summary
from consumer.core.validate import MAX_PROFILE_BYTES, cell_risks
from consumer.errors import MappingFailed, PoisonError, ValidationError
from consumer.mapping import RecordMapper, Skip, SkipReason
from consumer.metrics import Metrics
from consumer.target.urgent import SingleOutcome, SingleUpdater


class Intake:
    def __init__(
        self,
        *,
        mapper: RecordMapper,
        batcher: Batcher,
        settling: Settling,
        single: SingleUpdater | None,
        metrics: Metrics | None,
        summary: Summary,
        clock: Clock,
        reading: str = "A",
        max_future_skew_seconds: float = 86400.0,
    ) -> None:
        """``reading``: how Target decodes batch cells (``TARGET_CELL_DECODING``)."""
        self.mapper = mapper
        self.batcher = batcher
        self.settling = settling
        self.single = single
        self.metrics = metrics
        self.summary = summary
        self.clock = clock
        self.reading = reading
        # occurred_at further ahead than this is poison (invalid_occurred_at, guarantee 2).
        self.max_future_ms = int(max_future_skew_seconds * 1000)
        # Repartition mode (docs/repartition.md): this topic's records are updates the
        # forward stage already validated, in the internal format.
        self.owned_topic = ""
        self.dead_letter = self._dead_letter

    def take(self, records: list[Record]) -> None:
        """Run ``records`` (in consumption order) into the batcher, DLQ or urgent path."""
        now = self.clock.monotonic()
        wall = self.clock.time()
        latest_ms = int(wall * 1000) + self.max_future_ms
        map_record = self.mapper.map
        add = self.batcher.add
        track = self.settling.track
        single = self.single
        reading = self.reading
        long_values = unsafe_values = 0
        consumed: dict[tuple[str, str], int] = {}
        bulk = skipped = poison = urgent = 0
        mapping_skips: dict[str, int] = {}
        tps: dict[tuple[str, int], TopicPartition] = {}
        owned = self.owned_topic
        read_owned = internal_format.decode
        for rec in records:
            topic, partition, offset, _key, value, timestamp = rec
            key = (topic, partition)
            tp = tps.get(key)
            if tp is None:
                tp = tps[key] = TopicPartition(topic, partition)
            try:
                update: ProfileUpdate | Skip
                if topic == owned:  # repartition mode: validated by the forward stage
                    update = read_owned(value)
                else:
                    update = map_record(tp, offset, value, timestamp)
            except PoisonError as exc:
                poison += 1
                ck = (topic, "unknown")
                consumed[ck] = consumed.get(ck, 0) + 1
                self._dead_letter(exc, rec, tp)
                continue
            if isinstance(update, Skip):  # nothing to send: settled at once
                ck = (topic, "OTHER")
                consumed[ck] = consumed.get(ck, 0) + 1
                skipped += 1
                track(tp, offset, SETTLED)
                if update.reason is not SkipReason.NO_CHANGE:
                    why = update.reason
                    mapping_skips[why] = mapping_skips.get(why, 0) + 1
                continue
            ck = (topic, update.source)
            consumed[ck] = consumed.get(ck, 0) + 1
            try:  # Target's cell rules (issue 11): long values counted, unsafe ones under B
                long, unsafe = cell_risks(update, reading)
            except PoisonError as exc:
                poison += 1
                self._dead_letter(exc, rec, tp, stage="validate")
                continue
            long_values += long
            unsafe_values += unsafe
            if update.occurred_at > latest_ms:  # it would outrank every real update to come
                poison += 1
                self._dead_letter(from_the_future(update.occurred_at, latest_ms), rec, tp)
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
                    PoisonError(
                        "profile_too_large",
                        too_large_detail(
                            self.batcher.refused_size, update.attributes, MAX_PROFILE_BYTES
                        ),
                    ),
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
        forwarded = 0
        if owned:  # repartition mode: the forward stage counted these events when it read them
            forwarded = sum(n for (t, _), n in consumed.items() if t == owned)
            consumed = {k: n for k, n in consumed.items() if k[0] != owned}
        s.events_consumed += len(records) - forwarded
        s.events_bulk += bulk
        mapped_away = sum(mapping_skips.values()) if mapping_skips else 0
        s.events_skipped += skipped - mapped_away
        s.events_mapping_skipped += mapped_away
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
            if skipped > mapped_away:
                m.events_skipped.inc(skipped - mapped_away)
            for reason, n in mapping_skips.items():
                m.mapping_skips.labels(reason).inc(n)
            if long_values:
                m.long_values.inc(long_values)
            if unsafe_values:
                m.unsafe_values.labels("bulk").inc(unsafe_values)

    def _dead_letter(
        self, exc: PoisonError, rec: Record, tp: TopicPartition, stage: str = ""
    ) -> None:
        stage = stage or exc.stage
        if self.metrics is not None:
            self.metrics.poison_events.labels(stage, exc.reason).inc()
            if exc.reason == "value_unsafe_under_reading_b":
                self.metrics.unsafe_values.labels("dlq").inc()
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
                # Which field a mapping missed (guarantee 8 in docs/guarantees.md).
                extra_headers=(
                    (("mapping.path", exc.path),) if isinstance(exc, MappingFailed) else ()
                ),
            )
        )
        self.summary.dead_letters += 1


def from_the_future(occurred_at: int, latest_ms: int) -> PoisonError:
    return ValidationError(
        "invalid_occurred_at",
        f"occurred_at {occurred_at} is {(occurred_at - latest_ms) // 1000} s beyond the "
        "allowed clock skew into the future (PROFILE_SYNC_MAX_FUTURE_SKEW_SECONDS)",
    )
