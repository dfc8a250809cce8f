"""Restoring the owner's memory from the changelog topic (docs/repartition.md).

A new owner of repartition partitions reads the changelog partitions of the same numbers
from the beginning up to their high watermarks, with its own consumer that is not in any
group (``assign``, no commits), and merges every record into the guard of the
carry-forward (consumer/core/owner_memory.py) before the repartition partitions are
consumed. Compaction keeps one record per profile, so the read is bounded by the number
of profiles the partition owns, not by traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.errors import FatalError

log = logging.getLogger("profile_sync.changelog")

Apply = Callable[[bytes, bytes], None]
_WATERMARK_TIMEOUT_SECONDS = 10.0
_BATCH = 10_000
_RETRY_SECONDS = 0.2


class ChangelogRestorer:
    def __init__(self, config: dict[str, str], topic: str, timeout_seconds: float) -> None:
        conf: dict[str, Any] = {
            k: v
            for k, v in config.items()
            if not k.startswith(("group.", "enable.auto", "auto.commit", "partition.assignment"))
        }
        conf.update(
            {
                "group.id": f"{config.get('group.id', 'target-profile-sync')}.restore",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "logger": logging.getLogger("profile_sync.librdkafka"),
            }
        )
        self._conf = conf
        self.topic = topic
        self.timeout_seconds = timeout_seconds

    def restore(self, partitions: set[int], apply: Apply, beat: Callable[[], None]) -> int:
        """Read ``partitions`` of the changelog up to their high watermarks into ``apply``.

        ``beat`` is called between fetches (liveness). Returns the records read; raises
        ``FatalError`` when the changelog cannot be read within the timeout (the service
        must not own profiles it knows nothing about).
        """
        if not partitions:
            return 0
        consumer = Consumer(self._conf)
        try:
            return self._read(consumer, partitions, apply, beat)
        finally:
            consumer.close()

    def _read(
        self, consumer: Consumer, partitions: set[int], apply: Apply, beat: Callable[[], None]
    ) -> int:
        ends: dict[int, int] = {}
        starts = []
        deadline = time.monotonic() + self.timeout_seconds
        for p in sorted(partitions):
            low, high = self._watermarks(consumer, p, deadline, beat)
            if high > low:
                ends[p] = high
                starts.append(KafkaTopicPartition(self.topic, p, OFFSET_BEGINNING))
        if not ends:
            return 0
        consumer.assign(starts)
        read = 0
        while ends:
            if time.monotonic() > deadline:
                raise FatalError(
                    f"restoring the changelog {self.topic} took over {self.timeout_seconds:g}s "
                    f"({read} records read; partitions left: {sorted(ends)})"
                )
            beat()
            for msg in consumer.consume(_BATCH, 0.5):
                err = msg.error()
                if err is not None:
                    if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise FatalError(f"changelog read failed: {err.str()}")
                    continue
                p = msg.partition() or 0
                offset = msg.offset() or 0
                key = msg.key()
                value = msg.value()
                read += 1
                if key is not None and value is not None:  # a tombstone forgets
                    try:
                        apply(key, value)
                    except ValueError as exc:
                        log.warning(
                            "unreadable changelog record skipped",
                            extra={"fields": {"partition": p, "offset": offset, "error": str(exc)}},
                        )
                if p in ends and offset + 1 >= ends[p]:
                    del ends[p]
            if ends:
                # Compaction can leave the last offsets empty: the position says it too.
                for part in consumer.position([KafkaTopicPartition(self.topic, p) for p in ends]):
                    if part.offset >= ends.get(part.partition, 0):
                        ends.pop(part.partition, None)
        return read

    def _watermarks(
        self, consumer: Consumer, p: int, deadline: float, beat: Callable[[], None]
    ) -> tuple[int, int]:
        """(low, high) of one partition; a partition just created may have no leader for
        a moment, or be unknown to a broker's metadata yet: errors are retried until
        ``deadline``)."""
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    KafkaTopicPartition(self.topic, p), timeout=_WATERMARK_TIMEOUT_SECONDS
                )
                return int(low), int(high)
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal() or time.monotonic() > deadline:
                    raise FatalError(
                        f"cannot read the changelog {self.topic}[{p}]: {error.str()}"
                    ) from exc
            beat()
            time.sleep(_RETRY_SECONDS)
