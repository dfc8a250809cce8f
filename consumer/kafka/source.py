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

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.config import librdkafka_problem
from consumer.core.completion import metadata_for, parse_metadata
from consumer.core.model import TopicPartition
from consumer.core.seams import PartitionsCallback, Record
from consumer.errors import ConfigError, FatalError
from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.source")

# Reading the committed offsets (and their metadata) when partitions are assigned.
_COMMITTED_TIMEOUT_SECONDS = 10.0


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
        self._stopping = False
        # Complete-up-to offsets (consumer/core/completion.py), written as commit metadata:
        # what we know, the committed offset found at assignment (never stored below it,
        # so lag stays honest while a restart re-reads), the last offset stored.
        self._complete: dict[TopicPartition, int] = {}
        self._floor: dict[TopicPartition, int] = {}
        self._stored: dict[TopicPartition, int] = {}
        self._first_unknown: set[TopicPartition] = set()
        strategy = str(config.get("partition.assignment.strategy", ""))
        self._cooperative = "cooperative" in strategy
        self._fatal: str | None = None
        # The last consumed messages, for ``headers_of`` (Records carry no headers).
        self._messages: list[Message] = []
        self._by_offset: dict[tuple[str, int, int], Message] | None = None
        self._consumer.subscribe(
            list(topics), on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost
        )

    # -- callbacks, run by librdkafka inside consume()

    def _assign(self, _c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = _ours(partitions)
        self.assigned |= tps
        if partitions:
            self._start_where_complete(partitions)
        self.on_assign(tps)

    def _start_where_complete(self, partitions: list[KafkaTopicPartition]) -> None:
        """Start each partition at its complete-up-to offset (guarantee 13): what lies
        between it and the committed offset was accepted by Target but not known applied,
        so it is read and sent again."""
        try:
            committed = self._consumer.committed(partitions, timeout=_COMMITTED_TIMEOUT_SECONDS)
        except KafkaException as exc:
            if not self._stopping:
                raise FatalError(f"cannot read committed offsets: {exc.args[0].str()}") from exc
            # Stopping (several members leaving at once): these partitions will not be
            # read or committed here, so their start offsets do not matter.
            log.warning(
                "committed offsets unreadable while stopping; partitions left unread",
                extra={"fields": {"error": exc.args[0].str()}},
            )
            self._assign_paused(partitions)
            return
        starts = []
        replays = {}
        for part in committed:
            tp = TopicPartition(part.topic, part.partition)
            complete = parse_metadata(part.metadata)
            if part.offset < 0:
                self._first_unknown.add(tp)  # nothing committed: the first offset read
                starts.append(KafkaTopicPartition(part.topic, part.partition))
                continue
            self._floor[tp] = self._stored[tp] = part.offset
            if complete is not None and complete < part.offset:
                self._complete[tp] = complete
                replays[f"{tp.topic}[{tp.partition}]"] = [complete, part.offset]
                starts.append(KafkaTopicPartition(part.topic, part.partition, complete))
            else:
                self._complete[tp] = part.offset
                starts.append(KafkaTopicPartition(part.topic, part.partition, part.offset))
        if replays:
            log.info(
                "re-reading what was accepted but not known complete",
                extra={"fields": {"ranges": replays}},
            )
        if self._cooperative:
            self._consumer.incremental_assign(starts)
        else:
            self._consumer.assign(starts)

    def _assign_paused(self, partitions: list[KafkaTopicPartition]) -> None:
        if self._cooperative:
            self._consumer.incremental_assign(partitions)
        else:
            self._consumer.assign(partitions)
        self._consumer.pause(partitions)

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
        self._first_unknown -= tps
        for tp in tps:
            self._complete.pop(tp, None)
            self._floor.pop(tp, None)
            self._stored.pop(tp, None)
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
            # consume(n, timeout) waits out the whole timeout unless n messages are ready,
            # so a lone urgent record would wait it out too; poll returns as soon as one
            # is there, then consume takes what is already fetched without waiting.
            first = self._consumer.poll(timeout)
            if first is None:
                return []
            messages = [first]
            if max_records > 1:
                messages += self._consumer.consume(max_records - 1, 0)
        except KafkaException as exc:
            raise FatalError(f"kafka consume failed: {exc.args[0].str()}") from exc
        self._messages, self._by_offset = messages, None
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
        if self._first_unknown and records:
            for rec in records:
                tp = TopicPartition(rec[0], rec[1])
                if tp in self._first_unknown:
                    self._first_unknown.discard(tp)
                    self._complete.setdefault(tp, rec[2])
        if len(records) < len(messages):
            for m in messages:
                err = m.error()
                if err is not None:
                    self._handle_error(err)
        return records

    def headers_of(self, tp: TopicPartition, offset: int) -> tuple[tuple[str, bytes | None], ...]:
        """The headers of a record of the last ``consume`` call, () if it has none or is
        not among them. For the rare poison path: a ``Record`` carries no headers, so the
        hot path builds no header objects (msg.headers() copies them every call)."""
        index = self._by_offset
        if index is None:
            index = self._by_offset = {
                (m.topic() or "", m.partition() or 0, m.offset() or 0): m
                for m in self._messages
                if m.error() is None
            }
        msg = index.get((tp.topic, tp.partition, offset))
        raw = msg.headers() if msg is not None else None
        return tuple(
            (k, v if isinstance(v, bytes) or v is None else str(v).encode())
            for k, v in (raw if isinstance(raw, list) else [])
        )

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
        for tp, off in mine.items():
            self._stored[tp] = max(off, self._floor.get(tp, -1))
        self._store(set(mine))

    def store_complete(self, complete: dict[TopicPartition, int]) -> None:
        """New complete-up-to offsets: stored with the offsets as commit metadata, and
        committed now (auto-commit skips an offset that did not move)."""
        mine = {tp: off for tp, off in complete.items() if tp in self.assigned}
        if not mine:
            return
        self._complete.update(mine)
        parts = self._store(set(mine))
        if parts:
            try:
                self._consumer.commit(offsets=parts, asynchronous=True)
            except KafkaException as exc:
                log.warning("commit failed", extra={"fields": {"error": exc.args[0].str()}})

    def _store(self, tps: set[TopicPartition]) -> list[KafkaTopicPartition]:
        parts = []
        for tp in tps:
            offset = self._stored.get(tp)
            if offset is None:
                continue
            complete = self._complete.get(tp)
            if complete is None:
                parts.append(KafkaTopicPartition(tp.topic, tp.partition, offset))
            else:
                meta = metadata_for(min(complete, offset))
                parts.append(KafkaTopicPartition(tp.topic, tp.partition, offset, metadata=meta))
        if parts:
            try:
                self._consumer.store_offsets(offsets=parts)
            except KafkaException as exc:
                log.warning(
                    "storing offsets failed", extra={"fields": {"error": exc.args[0].str()}}
                )
        return parts

    def commit_sync(self) -> None:
        """Commit the stored offsets now (rebalance, shutdown), with their metadata."""
        parts = self._store(self.assigned & set(self._stored))
        try:
            if parts:
                self._consumer.commit(offsets=parts, asynchronous=False)
            else:
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

    def begin_stop(self) -> None:
        self._stopping = True

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

    def progress(self, tps: set[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
        """(next offset to read, end offset) of each of ``tps`` as the broker knows them now
        (the repartition mode's handover at shutdown, consumer/core/handover.py); a
        partition the broker cannot answer for is left out."""
        out: dict[TopicPartition, tuple[int, int]] = {}
        if not tps:
            return out
        try:
            parts = self._consumer.position([KafkaTopicPartition(t, p) for t, p in tps])
            unread = [p for p in parts if p.offset < 0]  # nothing consumed since assignment
            committed = {
                (c.topic, c.partition): c.offset
                for c in (self._consumer.committed(unread, 10) if unread else [])
            }
            for part in parts:
                low, high = self._consumer.get_watermark_offsets(part, timeout=5, cached=False)
                at = part.offset
                if at < 0:
                    at = committed.get((part.topic, part.partition), -1)
                if at < 0:
                    at = low  # auto.offset.reset=earliest
                out[TopicPartition(part.topic, part.partition)] = (at, high)
        except KafkaException as exc:
            log.warning(
                "cannot read partition offsets", extra={"fields": {"error": exc.args[0].str()}}
            )
        return out

    def close(self) -> None:
        """Leave the group (runs the revoke callback for what is still assigned)."""
        self._consumer.close()
