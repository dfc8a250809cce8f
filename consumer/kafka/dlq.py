"""The dead-letter topic: poison records and rejected rows, with why
(guarantees 6 and 8 in docs/guarantees.md).

Each record keeps the original key and value bytes and carries headers naming the stage,
reason, error class and message, and where it came from. An offset is settled by its dead
letter only once the broker confirms the write.

A dead letter never crashes the service (guarantee 8):

- one too large for the producer (``message.max.bytes``) or refused by the broker as too
  large for the topic is written **truncated**: a prefix of the value, with headers giving
  the original size, its SHA-256 and the source coordinates, so the original can be read
  from the source topic while it is retained;
- one the broker refuses for any other reason (topic missing, not authorised, broker
  down) is retried with capped exponential backoff. Its offset stays held back; after
  ``blocked_after`` seconds of failing, ``on_blocked`` is told (readiness turns false and
  ``profile_sync_dead_letter_blocked`` is 1, which alerts). Nothing is skipped: skipping
  would commit over an event that is neither in Target nor in the DLQ.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.clock import Clock, SystemClock
from consumer.core.model import DeadLetter
from consumer.errors import FatalError
from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.dlq")

HEADER_PREFIX = "profile-sync."
# A failed write is tried again after this long, doubling up to the cap (librdkafka
# already retried internally; a refusal for good must not log once a second forever).
RETRY_INITIAL_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
# Failing this long makes the replica not ready: long enough to ride out a broker restart,
# short enough that a missing topic or ACL pages someone within minutes.
BLOCKED_AFTER_SECONDS = 300.0
# librdkafka's default message.max.bytes, when the producer config does not set one.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
# Room for the record's framing (lengths, timestamps, attributes) beside key, value, headers.
_FRAMING_BYTES = 1024
# After the broker refused a record as too large for the topic: keep at most this much.
_REFUSED_KEEP_BYTES = 1024
# librdkafka retries producing while its local queue is full for at most this long.
_QUEUE_FULL_WAIT_SECONDS = 1.0

_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE})


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
    ours: list[tuple[str, str | bytes | None]] = [
        (HEADER_PREFIX + k, v.encode("utf-8")) for k, v in headers
    ]
    return ours + list(letter.original_headers)


def truncated(letter: DeadLetter, max_bytes: int) -> DeadLetter:
    """``letter`` with its value cut so that the whole record fits in ``max_bytes``."""
    value = letter.value or b""
    extra = tuple(letter.extra_headers)
    if not any(k == "truncated" for k, _ in extra):  # cut again: the first note stays
        extra += (
            ("truncated", "true"),
            ("original.size", str(len(value))),
            ("original.sha256", hashlib.sha256(value).hexdigest()),
            (
                "truncated.reason",
                "the dead letter did not fit the DLQ topic; read the original at "
                "source.topic, source.partition, source.offset while the topic retains it",
            ),
        )
    letter = replace(letter, value=b"", message=letter.message[:200], extra_headers=extra)
    keep = max(0, max_bytes - _FRAMING_BYTES - _size(letter))
    return replace(letter, value=value[:keep])


def _size(letter: DeadLetter) -> int:
    return (
        len(letter.key or b"")
        + len(letter.value or b"")
        + sum(len(k) + len(v or b"") for k, v in headers_for(letter))
    )


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
        on_blocked: Callable[[str | None], None] | None = None,
        blocked_after: float = BLOCKED_AFTER_SECONDS,
    ) -> None:
        try:
            self._producer = Producer(
                {**config, "logger": logging.getLogger("profile_sync.librdkafka")}
            )
        except KafkaException as exc:
            raise FatalError(f"cannot create the DLQ producer: {exc.args[0].str()}") from exc
        self._clock = clock or SystemClock()
        self._topic = topic
        self._on_settled = on_settled
        self._metrics = metrics
        self._on_blocked = on_blocked
        self._blocked_after = blocked_after
        self._max_bytes = int(config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self._pending: dict[int, int] = {}
        # (due, attempt, letter, unit)
        self._retry: list[tuple[float, int, DeadLetter, int]] = []
        self._failing_since: float | None = None
        self._blocked = False

    @property
    def pending(self) -> int:
        return sum(self._pending.values())

    @property
    def blocked(self) -> bool:
        """Dead letters have failed for longer than ``blocked_after`` seconds."""
        return self._blocked

    def send(self, letter: DeadLetter, unit: int) -> None:
        self._pending[unit] = self._pending.get(unit, 0) + 1
        if _size(letter) + _FRAMING_BYTES > self._max_bytes:
            letter = truncated(letter, self._max_bytes)
            self._log_truncated(letter)
        self._produce(letter, unit, 1)

    def _log_truncated(self, letter: DeadLetter) -> None:
        if self._metrics is not None:
            self._metrics.dead_letters_truncated.inc()
        log.warning(
            "dead letter truncated to fit the DLQ topic",
            extra={
                "fields": {
                    "reason": letter.reason,
                    "source_topic": letter.tp.topic if letter.tp else None,
                    "source_partition": letter.tp.partition if letter.tp else None,
                    "source_offset": letter.offset,
                    "kept_bytes": len(letter.value or b""),
                }
            },
        )

    def _failed(self, letter: DeadLetter, unit: int, attempt: int, error: str) -> None:
        now = self._clock.monotonic()
        delay = min(RETRY_MAX_SECONDS, RETRY_INITIAL_SECONDS * 2 ** (attempt - 1))
        if self._failing_since is None:
            self._failing_since = now
        log.error(
            "dead-letter write failed, will retry",
            extra={
                "fields": {
                    "reason": letter.reason,
                    "error": error,
                    "attempt": attempt,
                    "retry_in_seconds": delay,
                }
            },
        )
        if self._metrics is not None:
            self._metrics.dead_letter_failures.inc()
        self._retry.append((now + delay, attempt + 1, letter, unit))

    def _produce(self, letter: DeadLetter, unit: int, attempt: int) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                if err.code() in _TOO_LARGE and len(letter.value or b"") > _REFUSED_KEEP_BYTES:
                    # The topic's max.message.bytes is below ours: keep a stub.
                    stub = replace(letter, value=b"")
                    cut = truncated(letter, _REFUSED_KEEP_BYTES + _FRAMING_BYTES + _size(stub))
                    self._log_truncated(cut)
                    self._produce(cut, unit, attempt)
                    return
                self._failed(letter, unit, attempt, err.str())
                return
            self._delivered(letter, unit)

        waited = 0.0
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
                if waited >= _QUEUE_FULL_WAIT_SECONDS:
                    self._failed(letter, unit, attempt, "local producer queue full")
                    return
                self._producer.poll(0.1)  # local queue full: let deliveries drain
                waited += 0.1
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() in _TOO_LARGE and len(letter.value or b"") > 0:
                    letter = truncated(letter, min(self._max_bytes, _size(letter)) // 2)
                    self._log_truncated(letter)
                    continue
                self._failed(letter, unit, attempt, err.str())
                return

    def _delivered(self, letter: DeadLetter, unit: int) -> None:
        if self._metrics is not None:
            self._metrics.dead_letters.labels(letter.stage, letter.reason).inc()
        if not self._retry:
            self._failing_since = None
            self._set_blocked(None)
        left = self._pending[unit] - 1
        if left:
            self._pending[unit] = left
        else:
            del self._pending[unit]
            self._on_settled(unit)

    def _set_blocked(self, reason: str | None) -> None:
        blocked = reason is not None
        if blocked == self._blocked:
            return
        self._blocked = blocked
        if self._metrics is not None:
            self._metrics.dead_letter_blocked.set(1 if blocked else 0)
        if blocked:
            log.error("dead letters blocked", extra={"fields": {"error": reason}})
        else:
            log.info("dead letters flowing again")
        if self._on_blocked is not None:
            self._on_blocked(reason)

    def poll(self) -> None:
        """Serve delivery reports (on the caller's thread) and retry failed writes."""
        self._producer.poll(0)
        if self._retry:
            now = self._clock.monotonic()
            due = [r for r in self._retry if r[0] <= now]
            self._retry = [r for r in self._retry if r[0] > now]
            for _, attempt, letter, unit in due:
                self._produce(letter, unit, attempt)
            since = self._failing_since
            if since is not None and now - since >= self._blocked_after:
                self._set_blocked(f"dead letters to {self._topic} failing for {now - since:.0f}s")

    def flush(self, timeout: float) -> int:
        """Wait for outstanding writes; returns how many are still undelivered."""
        deadline = self._clock.monotonic() + timeout
        while True:
            self.poll()
            left = deadline - self._clock.monotonic()
            remaining = self._producer.flush(max(0.0, min(0.2, left)))
            if (remaining == 0 and not self._retry) or self._clock.monotonic() >= deadline:
                return remaining + len(self._retry)
