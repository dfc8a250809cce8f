"""The producer of the repartition mode: updates to the repartition topic, the owner's
memory to the changelog (docs/repartition.md).

One idempotent producer (``enable.idempotence=true``, ``acks=all``) with the fixed
``murmur2_random`` partitioner (consumer/kafka/internal_topics.py). A forwarded update
names the ledger unit its source offset waits for; the delivery report settles it
(``on_settled``). Changelog writes carry no unit: ``changelog_mark`` and
``changelog_done`` let the owner hold back repartition offsets until every changelog
write made before them is acknowledged. A write that fails for good (librdkafka retries
until ``delivery.timeout.ms``) makes the service stop: offsets behind it are not
committed, so the records are read again by the next owner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.errors import ConfigError, FatalError
from consumer.kafka.internal_topics import PARTITIONER

log = logging.getLogger("profile_sync.repartition")


# Every forwarded update, an urgent one too, waits this long before it is sent to the
# owner: the DLQ producer's 20 ms would add 20 ms to every urgent event's delay
# (bench/bench_urgent.py). Batches still grow under load while requests are in flight.
FORWARD_LINGER_MS = 5


class RepartitionProducer:
    def __init__(
        self,
        config: dict[str, str],
        repartition_topic: str,
        changelog_topic: str,
        *,
        linger_ms: str | int = FORWARD_LINGER_MS,
    ) -> None:
        """``config``: connection settings; ``linger_ms``: the user's ``KAFKA_LINGER_MS``
        if set (``config`` may carry the DLQ producer's default, not meant for this one)."""
        conf: dict[str, Any] = dict(config)
        conf.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": PARTITIONER,
                "linger.ms": linger_ms,
                "compression.type": conf.get("compression.type", "lz4"),
                "logger": logging.getLogger("profile_sync.librdkafka"),
            }
        )
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ConfigError({"repartition producer": exc.args[0].str()}) from exc
        self.repartition_topic = repartition_topic
        self.changelog_topic = changelog_topic
        self.on_settled: Callable[[int], None] = lambda unit: None
        self._outstanding = 0
        self._unit_pending: dict[int, int] = {}
        self._callbacks: dict[int, Callable[[KafkaError | None, Message], None]] = {}
        self._failed: str | None = None
        # Changelog writes by sequence number; ``_log_done`` is the count of the longest
        # acknowledged prefix.
        self._log_sent = 0
        self._log_done = 0
        self._log_acked: set[int] = set()
        self.bytes_forwarded = 0
        self.bytes_logged = 0

    # -- the repartition stage

    def forward(self, key: bytes, value: bytes, unit: int) -> None:
        """Produce one update; ``on_settled(unit)`` once the broker acknowledged every
        update of ``unit`` (the forward stage uses one unit per consumed list)."""
        cb = self._callbacks.get(unit)
        if cb is None:
            cb = self._callbacks[unit] = partial(self._forwarded, unit)
        self._unit_pending[unit] = self._unit_pending.get(unit, 0) + 1
        self._produce(self.repartition_topic, key, value, cb)
        self.bytes_forwarded += len(key) + len(value)

    def _forwarded(self, unit: int, err: KafkaError | None, _msg: Message) -> None:
        self._outstanding -= 1
        if err is not None:
            self._fail(err)
            return
        left = self._unit_pending[unit] - 1
        if left:
            self._unit_pending[unit] = left
        else:
            del self._unit_pending[unit]
            del self._callbacks[unit]
            self.on_settled(unit)

    # -- the owner's memory

    def log(self, key: bytes, value: bytes) -> None:
        seq = self._log_sent
        self._log_sent += 1

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self._outstanding -= 1
            if err is not None:
                self._fail(err)
                return
            self._log_acked.add(seq)
            while self._log_done in self._log_acked:
                self._log_acked.discard(self._log_done)
                self._log_done += 1

        self._produce(self.changelog_topic, key, value, delivered)
        self.bytes_logged += len(key) + len(value)

    def changelog_mark(self) -> int:
        """How many changelog writes were made so far."""
        return self._log_sent

    def changelog_done(self, mark: int) -> bool:
        """Whether the first ``mark`` changelog writes are all acknowledged."""
        return self._log_done >= mark

    # -- shared

    @property
    def pending(self) -> int:
        return self._outstanding

    def poll(self) -> None:
        """Serve delivery reports (they settle units and acknowledge changelog writes)."""
        self._producer.poll(0)
        if self._failed is not None:
            raise FatalError(f"repartition producer: {self._failed}")

    def flush(self, timeout: float) -> int:
        remaining = int(self._producer.flush(timeout))
        if self._failed is not None:
            raise FatalError(f"repartition producer: {self._failed}")
        return remaining

    def _produce(
        self, topic: str, key: bytes, value: bytes, cb: Callable[[KafkaError | None, Message], None]
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=cb)
                self._outstanding += 1
                return
            except BufferError:
                # librdkafka's queue is full: serve delivery reports, then try again.
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise FatalError(f"cannot produce to {topic}: {exc.args[0].str()}") from exc

    def _fail(self, err: KafkaError) -> None:
        log.error("internal topic write failed", extra={"fields": {"error": err.str()}})
        if self._failed is None:
            self._failed = err.str()
