"""The Kafka edge: the consumer, its rebalance callbacks, offsets, lag and pause state.

Only this module (and the DLQ producer) imports confluent_kafka. It implements the
``Source`` seam of consumer/core/seams.py: the core sees ``Record``s, ``TopicPartition``
values and plain callbacks, never a confluent-kafka ``Message``. Offsets are *stored* when settled
(``enable.auto.offset.store=false``) and librdkafka's auto-commit sends them; rebalance
and shutdown commit synchronously.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.config import librdkafka_problem
from consumer.core.model import TopicPartition
from consumer.core.seams import PartitionsCallback, Record
from consumer.errors import ConfigError, FatalError
from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.source")


def _ours(partitions: list[KafkaTopicPartition]) -> set[TopicPartition]:
    return {TopicPartition(p.topic, p.partition) for p in partitions}


def _theirs(offsets: dict[TopicPartition, int]) -> list[KafkaTopicPartition]:
    return [KafkaTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]


class KafkaSource:
    def __init__(
        self, config: dict[str, str], topics: tuple[str, ...], metrics: Metrics | None
    ) -> None:
        self._metrics = metrics
        conf: dict[str, Any] = dict(config)
        conf["on_commit"] = self._on_commit
        conf["stats_cb"] = self._on_stats
        conf["error_cb"] = self._on_error
        # librdkafka's own log lines go through our (JSON) logging, not raw to stderr.
        conf["logger"] = logging.getLogger("profile_sync.librdkafka")
        try:
            self._consumer = Consumer(conf)
        except KafkaException as exc:
            error = exc.args[0]
            raise ConfigError(librdkafka_problem(error.str())) from exc
        self.assigned: set[TopicPartition] = set()
        self.on_assign: PartitionsCallback = lambda tps: None
        self.on_revoke: PartitionsCallback = lambda tps: None
        self.on_lost: PartitionsCallback = lambda tps: None
        self._rewind: set[TopicPartition] = set()
        self._paused = False
        self._fatal: str | None = None
        self._consumer.subscribe(
            list(topics), on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost
        )

    # -- callbacks, run by librdkafka inside consume()

    def _assign(self, _c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = _ours(partitions)
        self.assigned |= tps
        self.on_assign(tps)

    def _revoke(self, _c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = _ours(partitions)
        try:
            self.on_revoke(tps)
        finally:
            self._release(tps)

    def _lost(self, _c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = _ours(partitions)
        try:
            self.on_lost(tps)
        finally:
            self._release(tps)

    def _release(self, tps: set[TopicPartition]) -> None:
        self.assigned -= tps
        self._rewind -= tps
        if self._metrics is not None:
            # The new owner reports these partitions' lag now; a stale series would
            # inflate the lag panels, the alert and the autoscaler.
            for tp in tps:
                with contextlib.suppress(KeyError):
                    self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    def _on_commit(self, err: KafkaError | None, partitions: list[KafkaTopicPartition]) -> None:
        if self._metrics is None:
            return
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            self._metrics.commit_failures.inc()
            log.warning("offset commit failed", extra={"fields": {"error": err.str()}})
            return
        done = [p for p in partitions if p.error is None and p.offset >= 0]
        if done:
            self._metrics.offsets_committed.inc(len(done))

    def _on_stats(self, stats_json: str) -> None:
        if self._metrics is None:
            return
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        for topic, tstats in stats.get("topics", {}).items():
            for pid, pstats in tstats.get("partitions", {}).items():
                partition = int(pid)
                if partition < 0 or TopicPartition(topic, partition) not in self.assigned:
                    continue
                lag = pstats.get("consumer_lag", -1)
                if lag is not None and lag >= 0:
                    self._metrics.consumer_lag.labels(topic, str(partition)).set(lag)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        log.warning(
            "kafka client error", extra={"fields": {"error": err.str(), "code": err.name()}}
        )

    # -- used by the loop

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        """Up to ``max_records`` records; error events are handled here, not returned."""
        if self._fatal:
            raise FatalError(f"kafka client entered a fatal state: {self._fatal}")
        if self._rewind:
            self._do_rewind()
        try:
            messages = self._consumer.consume(max_records, timeout)
        except KafkaException as exc:
            raise FatalError(f"kafka consume failed: {exc.args[0].str()}") from exc
        # The hot path (~40k records/s): tuple.__new__ skips the NamedTuple's Python-level
        # __new__. Topic, partition and offset are None only on error events, left out here.
        new = tuple.__new__
        records: list[Record] = [
            new(
                Record, (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1])
            )
            for m in messages
            if m.error() is None
        ]
        if len(records) < len(messages):
            for m in messages:
                err = m.error()
                if err is not None:
                    self._handle_error(err)
        return records

    def _handle_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise FatalError(f"kafka fatal error: {err.str()}")
        log.warning("kafka consume error", extra={"fields": {"error": err.str()}})

    def store_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        mine = {tp: off for tp, off in offsets.items() if tp in self.assigned}
        if not mine:
            return
        try:
            self._consumer.store_offsets(offsets=_theirs(mine))
        except KafkaException as exc:
            log.warning("storing offsets failed", extra={"fields": {"error": exc.args[0].str()}})

    def commit_sync(self) -> None:
        """Commit the stored offsets now (rebalance, shutdown)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError._NO_OFFSET:
                if self._metrics is not None:
                    self._metrics.commit_failures.inc()
                log.warning("offset commit failed", extra={"fields": {"error": error.str()}})

    def pause_all(self) -> None:
        self._paused = True
        self.pause(self.assigned)

    def pause(self, tps: set[TopicPartition]) -> None:
        if tps:
            self._consumer.pause([KafkaTopicPartition(t, p) for t, p in tps])

    def resume_all(self) -> None:
        self._paused = False
        if self.assigned:
            self._consumer.resume([KafkaTopicPartition(t, p) for t, p in self.assigned])

    def request_rewind(self, tps: set[TopicPartition]) -> None:
        """Re-read ``tps`` from their committed offsets at the next turn."""
        self._rewind |= tps

    def _do_rewind(self) -> None:
        tps = self._rewind & self.assigned
        self._rewind = set()
        if not tps:
            return
        committed = self._consumer.committed([KafkaTopicPartition(t, p) for t, p in tps], 10)
        for part in committed:
            offset = part.offset if part.offset >= 0 else -2  # none committed: from the start
            try:
                self._consumer.seek(KafkaTopicPartition(part.topic, part.partition, offset))
            except KafkaException as exc:
                raise FatalError(
                    f"cannot rewind {part.topic}[{part.partition}]: {exc.args[0].str()}"
                ) from exc
        log.info(
            "partitions rewound to their committed offsets",
            extra={"fields": {"partitions": sorted(f"{t}[{p}]" for t, p in tps)}},
        )

    def close(self) -> None:
        """Leave the group (runs the revoke callback for what is still assigned)."""
        self._consumer.close()
