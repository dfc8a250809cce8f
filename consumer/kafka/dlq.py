"""The dead-letter topic: poison records and rejected rows, with why
(guarantees 6 and 8 in docs/guarantees.md).

Each record keeps the original key and value bytes (for a rejected batch row: the row as
JSON) and carries headers naming the stage, reason, error class and message, and where
it came from. An offset is settled by its dead letter only once the broker confirms the
write; a failed write is retried and holds the offset back meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.clock import Clock, SystemClock
from consumer.core.model import DeadLetter
from consumer.errors import FatalError
from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.dlq")

HEADER_PREFIX = "profile-sync."
# A failed write is tried again after this long (librdkafka already retried internally).
RETRY_SECONDS = 1.0


def headers_for(letter: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    headers = [
        ("stage", letter.stage),
        ("reason", letter.reason),
        ("error.class", letter.error_class),
        ("error.message", letter.message[:1000]),
    ]
    if letter.tp is not None:
        headers += [
            ("source.topic", letter.tp.topic),
            ("source.partition", str(letter.tp.partition)),
        ]
    if letter.offset is not None:
        headers.append(("source.offset", str(letter.offset)))
    headers += list(letter.extra_headers)
    return [(HEADER_PREFIX + k, v.encode("utf-8")) for k, v in headers]


class DeadLetterQueue:
    """Writes dead letters; calls ``on_settled(unit)`` when every letter of a unit landed.

    The ``DeadLetterSink`` seam of consumer/core/seams.py.
    """

    def __init__(
        self,
        config: dict[str, str],
        topic: str,
        on_settled: Callable[[int], None],
        metrics: Metrics | None,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        try:
            self._producer = Producer(
                {**config, "logger": logging.getLogger("profile_sync.librdkafka")}
            )
        except KafkaException as exc:
            raise FatalError(f"cannot create the DLQ producer: {exc.args[0].str()}") from exc
        self._topic = topic
        self._on_settled = on_settled
        self._metrics = metrics
        self._pending: dict[int, int] = {}
        self._retry: list[tuple[float, DeadLetter, int]] = []

    @property
    def pending(self) -> int:
        return sum(self._pending.values())

    def send(self, letter: DeadLetter, unit: int) -> None:
        self._pending[unit] = self._pending.get(unit, 0) + 1
        self._produce(letter, unit)

    def _produce(self, letter: DeadLetter, unit: int) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                log.error(
                    "dead-letter write failed, will retry",
                    extra={"fields": {"reason": letter.reason, "error": err.str()}},
                )
                if self._metrics is not None:
                    self._metrics.dead_letter_failures.inc()
                self._retry.append((self._clock.monotonic() + RETRY_SECONDS, letter, unit))
                return
            if self._metrics is not None:
                self._metrics.dead_letters.labels(letter.stage, letter.reason).inc()
            left = self._pending[unit] - 1
            if left:
                self._pending[unit] = left
            else:
                del self._pending[unit]
                self._on_settled(unit)

        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=letter.key,
                    value=letter.value,
                    headers=headers_for(letter),
                    on_delivery=delivered,
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain

    def poll(self) -> None:
        """Serve delivery reports (on the caller's thread) and retry failed writes."""
        self._producer.poll(0)
        if self._retry:
            now = self._clock.monotonic()
            due = [r for r in self._retry if r[0] <= now]
            self._retry = [r for r in self._retry if r[0] > now]
            for _, letter, unit in due:
                self._produce(letter, unit)

    def flush(self, timeout: float) -> int:
        """Wait for outstanding writes; returns how many are still undelivered."""
        deadline = self._clock.monotonic() + timeout
        while True:
            self.poll()
            remaining = self._producer.flush(max(0.0, min(0.2, deadline - self._clock.monotonic())))
            if (remaining == 0 and not self._retry) or self._clock.monotonic() >= deadline:
                return remaining + len(self._retry)
