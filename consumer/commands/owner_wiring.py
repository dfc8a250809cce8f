"""What ``run`` adds in the repartition mode (docs/repartition.md): the internal topics,
the producer, the logged carry-forward, the owner's source and the forward stage.

``Owner`` is built before the loop (its carry goes into the batcher, its source and
dead-letter sink into the loop) and ``attach``-ed once the loop exists (the forward stage
settles offsets through the loop's settling and dead-letters through its intake).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from consumer.clock import Clock, SystemClock
from consumer.config import Settings
from consumer.core.forward import Convert, Forwarder
from consumer.core.intake import from_the_future
from consumer.core.loop import Loop
from consumer.core.model import DeadLetter, ProfileUpdate, TopicPartition
from consumer.core.owner_memory import LoggedCarry
from consumer.core.ownership import OwnedSource
from consumer.core.placement import KeyedByProfile, use_repartition
from consumer.core.seams import DeadLetterSink, Record, Source
from consumer.core.summary import Summary
from consumer.core.validate import cell_risks
from consumer.health import Health
from consumer.kafka import internal_topics
from consumer.kafka.changelog import ChangelogRestorer
from consumer.kafka.internal_topics import InternalTopics
from consumer.kafka.repartition import FORWARD_LINGER_MS, RepartitionProducer
from consumer.kafka.source import KafkaSource
from consumer.mapping import RecordMapper, Skip, SkipReason
from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.owner")

SinkFactory = Callable[[Callable[[int], None]], DeadLetterSink]


def repartition_owner(
    settings: Settings, metrics: Metrics | None, keyed_by_profile: KeyedByProfile | None = None
) -> Owner | None:
    """The ``Owner`` when the settings call for the repartition mode, else None.

    ``keyed_by_profile(topic)``: the mapping's word on whether a topic's records are keyed
    by profile id (consumer/core/placement.py); without it a mapping file counts as not.
    """
    on, why = use_repartition(
        settings.repartition,
        settings.topics,
        mapping_file=settings.mapping_file,
        keyed_by_profile=keyed_by_profile,
    )
    if not on:
        log.info("direct mode", extra={"fields": {"why": why}})
        return None
    return Owner(settings, metrics, why)


def source_updates(
    mapper: RecordMapper,
    metrics: Metrics | None = None,
    *,
    clock: Clock | None = None,
    max_future_skew_seconds: float = 86400.0,
    reading: str = "A",
) -> Convert:
    """The forward stage's conversion: the intake's mapper; a skip means nothing to send
    (counted by reason like the intake counts it). The intake's refusals that depend only
    on the update (an occurred_at too far ahead, a cell unsafe under reading B) are made
    here too, so their dead letters hold the source record, not the internal one."""
    now = (clock or SystemClock()).time
    skew_ms = int(max_future_skew_seconds * 1000)

    def convert(rec: Record, tp: TopicPartition) -> ProfileUpdate | None:
        update = mapper.map(tp, rec.offset, rec.value, rec.timestamp)
        if isinstance(update, Skip):
            if metrics is not None and update.reason is not SkipReason.NO_CHANGE:
                metrics.mapping_skips.labels(update.reason).inc()
            return None
        latest_ms = int(now() * 1000) + skew_ms
        if update.occurred_at > latest_ms:
            raise from_the_future(update.occurred_at, latest_ms)
        cell_risks(update, reading)
        return update

    return convert


def forwarded(source: Source) -> int:
    """Source records the forward stage took since the last call (the loop counts only
    the repartition topic's records; ``--exit-when-idle`` needs both)."""
    return source.take_forwarded() if isinstance(source, OwnedSource) else 0


class _Sinks:
    """The dead-letter sink and the repartition producer served as one: the loop polls
    and flushes it wherever it serves dead letters, so acknowledged forwards settle
    their units at the same moments (turns, revoke, shutdown)."""

    def __init__(self, dead_letters: DeadLetterSink, producer: RepartitionProducer) -> None:
        self._dlq = dead_letters
        self._producer = producer

    @property
    def pending(self) -> int:
        return self._dlq.pending + self._producer.pending

    def send(self, letter: DeadLetter, unit: int) -> None:
        self._dlq.send(letter, unit)

    def poll(self) -> None:
        self._dlq.poll()
        self._producer.poll()

    def flush(self, timeout: float) -> int:
        return self._dlq.flush(timeout) + self._producer.flush(timeout)


class Owner:
    def __init__(self, settings: Settings, metrics: Metrics | None, why: str) -> None:
        group = settings.consumer_config().get("group.id", "")
        rep, changelog = internal_topics.names(
            group, settings.repartition_topic, settings.changelog_topic
        )
        self.topics = InternalTopics(
            rep, changelog, settings.repartition_partitions, settings.repartition_retention_ms
        )
        report = internal_topics.ensure(settings.producer_config(), self.topics)
        log.info(
            "repartition mode",
            extra={"fields": {"why": why, "topics": report}},
        )
        self.metrics = metrics
        self.producer = RepartitionProducer(
            settings.producer_config(),
            rep,
            changelog,
            linger_ms=settings.librdkafka().get("linger.ms", FORWARD_LINGER_MS),
        )
        self.carry = LoggedCarry(
            settings.carry_forward_max_profiles,
            self.producer.log,
            settings.carry_forward_max_bytes,
            settings.changelog_write_version,
        )
        self.restorer = ChangelogRestorer(
            settings.consumer_config(), changelog, settings.changelog_restore_timeout_seconds
        )
        self.source: OwnedSource | None = None

    @property
    def subscribed(self) -> tuple[str, ...]:
        """What the consumer subscribes to besides the source topics."""
        return (self.topics.repartition,)

    def own(self, inner: Source, health: Health | None) -> OwnedSource:
        beat = health.beat if health is not None else lambda: None

        def restore(partitions: set[int]) -> int:
            return self.restorer.restore(partitions, self.carry.restore, beat)

        def restored(seconds: float, records: int) -> None:
            if self.metrics is not None:
                self.metrics.changelog_restore_seconds.observe(seconds)
                self.metrics.changelog_restored_records.inc(records)

        self.source = OwnedSource(
            inner,
            self.topics.repartition,
            restore=restore,
            changelog_mark=self.producer.changelog_mark,
            changelog_done=self.producer.changelog_done,
            flush=self.producer.flush,
            on_restored=restored,
            progress=inner.progress if isinstance(inner, KafkaSource) else lambda tps: {},
        )
        if health is not None:
            owned = self.source
            health.restoring = lambda: owned.restoring
        return self.source

    def sinks(self, factory: SinkFactory) -> SinkFactory:
        def build(on_settled: Callable[[int], None]) -> DeadLetterSink:
            self.producer.on_settled = on_settled
            return _Sinks(factory(on_settled), self.producer)

        return build

    def attach(self, loop: Loop, convert: Convert) -> Forwarder:
        """Start the forward stage: the loop's settling tracks and settles source offsets,
        its intake dead-letters poison and reads the repartition topic's records."""
        assert self.source is not None
        loop.intake.owned_topic = self.topics.repartition
        forwarder = Forwarder(
            self.topics.repartition,
            convert=convert,
            writes=self.producer,
            track=loop.settling.track,
            new_unit=loop.settling.new_unit,
            dead_letter=loop.intake.dead_letter,
        )
        self.source.forward = self._counted(forwarder, loop.summary)
        return forwarder

    def _counted(
        self, forwarder: Forwarder, summary: Summary
    ) -> Callable[[list[Record]], list[Record]]:
        """``forwarder.take`` that also counts what it read, as the intake counts events
        in the direct mode (the intake leaves the repartition topic's records uncounted)."""
        metrics = self.metrics

        def take(records: list[Record]) -> list[Record]:
            before = (forwarder.forwarded, forwarder.skipped, forwarder.poison)
            owned = forwarder.take(records)
            if len(owned) == len(records):
                return owned
            if self.source is not None:
                self.source.forwarded += len(records) - len(owned)
            forwarded = forwarder.forwarded - before[0]
            summary.events_consumed += len(records) - len(owned)
            summary.events_skipped += forwarder.skipped - before[1]
            summary.events_poison += forwarder.poison - before[2]
            if metrics is not None:
                for (topic, label), n in forwarder.consumed.items():
                    metrics.events_consumed.labels(topic, label).inc(n)
                if forwarded:
                    metrics.events_forwarded.inc(forwarded)
            forwarder.consumed.clear()
            return owned

        return take
