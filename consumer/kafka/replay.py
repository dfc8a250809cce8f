"""Replaying dead letters: read the DLQ topic, select, re-publish to the source topics.

A dead letter of an event keeps the event's key, value bytes and headers and names where
it came from (``profile-sync.source.topic``, ``.partition``, ``.offset``), so re-publishing those
bytes to the source topic makes the service read the event again, once whatever refused
it (a mapping, a clock, a limit) is fixed. The newest-value rule (guarantee 2 in
docs/guarantees.md) makes a replay safe: an event older than what Target holds is dropped.

Not replayable, and reported as such: a letter without a source topic, and a truncated
letter (its value is only a prefix; read the original at its source coordinates).

Reading stops at the DLQ's end offsets as of the start, so a replay always ends, even
when replayed events are dead-lettered again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.errors import FatalError
from consumer.kafka.dlq import HEADER_PREFIX

log = logging.getLogger("profile_sync.replay")

# How long to wait for the DLQ's metadata, one fetch, or the final flush.
_TIMEOUT_SECONDS = 30.0
# The header a replayed record carries: where in the DLQ it was replayed from.
REPLAYED_FROM = HEADER_PREFIX + "replayed.from"


@dataclass(frozen=True, slots=True)
class Letter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]  # ours, without the prefix
    original_headers: tuple[tuple[str, bytes | None], ...] = ()  # the event's own

    @property
    def reason(self) -> str:
        return self.headers.get("reason", "")

    @property
    def source_topic(self) -> str:
        return self.headers.get("source.topic", "")

    @property
    def replayable(self) -> str | None:
        """None when it can be replayed; otherwise why not."""
        if not self.source_topic:
            return "no_source_topic"
        if self.headers.get("truncated") == "true":
            return "truncated"
        if self.value is None:
            return "no_value"
        return None


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to replay; every given criterion must hold."""

    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None  # inclusive
    source_topics: frozenset[str] = frozenset()

    def matches(self, letter: Letter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.since_ms is not None and letter.timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and letter.timestamp_ms >= self.until_ms:
            return False
        if self.partition is not None and letter.partition != self.partition:
            return False
        if self.from_offset is not None and letter.offset < self.from_offset:
            return False
        if self.to_offset is not None and letter.offset > self.to_offset:
            return False
        return not (self.source_topics and letter.source_topic not in self.source_topics)


@dataclass(slots=True)
class Report:
    read: int = 0
    selected: int = 0
    replayed: int = 0
    not_replayable: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    by_topic: dict[str, int] = field(default_factory=dict)


def _letter(msg: Message) -> Letter:
    headers: dict[str, str] = {}
    original: list[tuple[str, bytes | None]] = []
    raw = msg.headers() or []
    for k, v in raw if isinstance(raw, list) else []:
        value = v if isinstance(v, bytes) or v is None else str(v).encode()
        if not k.startswith(HEADER_PREFIX):
            original.append((k, value))
        elif value is not None:
            headers[k[len(HEADER_PREFIX) :]] = value.decode("utf-8", "replace")
    _, ts = msg.timestamp()
    return Letter(
        msg.partition() or 0,
        msg.offset() or 0,
        ts,
        msg.key(),
        msg.value(),
        headers,
        tuple(original),
    )


def read_letters(config: dict[str, str], topic: str) -> Iterator[Letter]:
    """Every dead letter of ``topic`` up to its end offsets as of now.

    ``config``: consumer properties; the group is only named, never joined nor committed.
    """
    consumer = Consumer({**config, "enable.auto.commit": "false"})
    try:
        md = consumer.list_topics(topic, timeout=_TIMEOUT_SECONDS).topics.get(topic)
        if md is None or md.error is not None:
            raise FatalError(f"cannot read the DLQ topic {topic}: {md.error if md else 'absent'}")
        ends: dict[int, int] = {}
        for p in sorted(md.partitions):
            low, high = consumer.get_watermark_offsets(
                KafkaTopicPartition(topic, p), timeout=_TIMEOUT_SECONDS
            )
            if high > low:
                ends[p] = high
        if not ends:
            return
        consumer.assign([KafkaTopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        left = dict(ends)
        stalled_at = time.monotonic() + _TIMEOUT_SECONDS
        while left:
            # consume() returns when it has num_messages or the timeout passed: keep it short.
            msgs = consumer.consume(num_messages=500, timeout=0.5)
            if msgs:
                stalled_at = time.monotonic() + _TIMEOUT_SECONDS
            elif time.monotonic() > stalled_at:
                raise FatalError(f"reading {topic} stalled with {left} offsets left")
            for msg in msgs:
                error = msg.error()
                if error is not None:
                    raise FatalError(f"reading {topic}: {error.str()}")
                letter = _letter(msg)
                p = letter.partition
                if p not in left or letter.offset >= left[p]:
                    continue
                yield letter
                if letter.offset + 1 >= left[p]:
                    del left[p]
    except KafkaException as exc:
        raise FatalError(f"reading {topic}: {exc.args[0].str()}") from exc
    finally:
        consumer.close()


def replay(
    consumer_config: dict[str, str],
    producer_config: dict[str, str],
    dlq_topic: str,
    selection: Selection,
    *,
    dry_run: bool,
) -> Report:
    """Re-publish the selected, replayable dead letters to their source topics."""
    report = Report()
    producer = None if dry_run else Producer({**producer_config, "enable.idempotence": "true"})
    failures: list[str] = []

    def delivered(err: object, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for letter in read_letters(consumer_config, dlq_topic):
        report.read += 1
        if not selection.matches(letter):
            continue
        report.selected += 1
        why = letter.replayable
        if why is not None:
            report.not_replayable[why] = report.not_replayable.get(why, 0) + 1
            continue
        report.by_reason[letter.reason] = report.by_reason.get(letter.reason, 0) + 1
        report.by_topic[letter.source_topic] = report.by_topic.get(letter.source_topic, 0) + 1
        if producer is None:
            continue
        origin = f"{dlq_topic}/{letter.partition}/{letter.offset}"
        while True:
            try:
                producer.produce(
                    letter.source_topic,
                    key=letter.key,
                    value=letter.value,
                    headers=[*letter.original_headers, (REPLAYED_FROM, origin.encode("utf-8"))],
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.1)
        report.replayed += 1
    if producer is not None:
        left = producer.flush(_TIMEOUT_SECONDS)
        if left or failures:
            raise FatalError(
                f"replay incomplete: {left} not confirmed, {len(failures)} failed "
                f"({failures[:1]}); records already confirmed stay published"
            )
    return report
