"""Reading topics as they are now, outside the consumer group (``profile-sync verify``).

The reader assigns partitions itself: it never joins the service's group (no rebalance of
the running service) and never commits. It reads every partition from its start (or the
last ``recent`` records) up to the end offsets seen when it began, so it terminates while
producers keep writing. The service group's committed offsets are read without joining it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.core.model import TopicPartition
from consumer.errors import FatalError

# Broker metadata and offset lookups: long enough for a slow cluster, short enough that a
# wrong address fails within a minute.
_LOOKUP_SECONDS = 15.0


def _consumer(properties: dict[str, str], group_id: str) -> Consumer:
    return Consumer(
        {
            **properties,
            # librdkafka wants a group id even for assign(); nothing is committed to it.
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )


def read(
    properties: dict[str, str], topics: tuple[str, ...], recent: int, timeout: float
) -> Iterator[tuple[TopicPartition, int, bytes | None, int | None]]:
    """``(partition, offset, value, timestamp ms)`` of every record up to the end offsets
    of now.

    ``recent`` > 0: only the last ``recent`` records of each partition. Raises
    ``FatalError`` when Kafka does not answer, a topic does not exist, or ``timeout``
    seconds pass before the end.
    """
    consumer = _consumer(properties, "profile-sync-verify")
    try:
        ends: dict[TopicPartition, int] = {}
        assignment = []
        for topic in topics:
            for partition in _partitions(consumer, topic):
                kp = KafkaTopicPartition(topic, partition)
                try:
                    low, high = consumer.get_watermark_offsets(kp, timeout=_LOOKUP_SECONDS)
                except KafkaException as exc:
                    raise FatalError(f"cannot read offsets of {topic}: {exc}") from None
                if high <= low:
                    continue
                start = max(low, high - recent) if recent > 0 else OFFSET_BEGINNING
                ends[TopicPartition(topic, partition)] = high
                assignment.append(KafkaTopicPartition(topic, partition, start))
        if not assignment:
            return
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise FatalError(f"reading the topics took longer than {timeout:g} s")
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                tp = TopicPartition(str(message.topic()), int(message.partition() or 0))
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(tp, None)
                    elif error.fatal():
                        raise FatalError(f"Kafka error: {error.str()}")
                    continue
                end = ends.get(tp)
                offset = int(message.offset() or 0)
                if end is None or offset >= end:
                    continue
                kind, stamp = message.timestamp()
                yield tp, offset, message.value(), stamp if kind != 0 else None  # 0: none
                if offset + 1 >= end:
                    del ends[tp]
    finally:
        consumer.close()


def committed(
    properties: dict[str, str], group_id: str, tps: set[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offset (next to read) per partition; -1 where none."""
    consumer = _consumer(properties, group_id)
    try:
        asked = [KafkaTopicPartition(tp.topic, tp.partition) for tp in sorted(tps)]
        try:
            answer = consumer.committed(asked, timeout=_LOOKUP_SECONDS) if asked else []
        except KafkaException as exc:
            raise FatalError(f"cannot read the committed offsets of {group_id}: {exc}") from None
        return {TopicPartition(p.topic, p.partition): p.offset for p in answer}
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=_LOOKUP_SECONDS)
    except KafkaException as exc:
        raise FatalError(f"cannot reach Kafka: {exc}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise FatalError(f"topic {topic} does not exist")
    return sorted(found.partitions)
