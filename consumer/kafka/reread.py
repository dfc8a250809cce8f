"""Reading given offsets of the source topics again: the original events of a batch that
Target rejected, so that they are dead-lettered as they were published (key, value and
headers) and can be replayed (guarantee 6 in docs/guarantees.md).

A rare path, run on the loop's thread: one short-lived consumer that is assigned the
partitions (it joins no group and commits nothing), seeks to each range and reads to its
end, within a time budget. Only this module and the other Kafka edges import
confluent_kafka.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.core.model import TopicPartition
from consumer.core.seams import OriginalEvent

log = logging.getLogger("profile_sync.reread")

# Reading a batch's events back must not stall the loop for long; past this the batch's
# rows are dead-lettered as JSON rows instead (logged).
REREAD_TIMEOUT_SECONDS = 30.0


class KafkaRereader:
    """The ``Rereader`` seam of consumer/core/seams.py."""

    def __init__(self, config: dict[str, str], timeout: float = REREAD_TIMEOUT_SECONDS) -> None:
        self._config = {
            **config,
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "false",
            "logger": logging.getLogger("profile_sync.librdkafka"),
        }
        self._timeout = timeout

    def read(
        self, ranges: dict[TopicPartition, list[tuple[int, int]]]
    ) -> list[OriginalEvent] | None:
        """Every record at the offsets in ``ranges`` (first, last inclusive), in offset
        order per partition; None if they could not all be read in time."""
        wanted = {
            tp: {o for first, last in spans for o in range(first, last + 1)}
            for tp, spans in ranges.items()
        }
        total = sum(len(o) for o in wanted.values())
        if not total:
            return []
        deadline = time.monotonic() + self._timeout
        out: list[OriginalEvent] = []
        try:
            consumer = Consumer(self._config)
        except KafkaException as exc:
            log.error("cannot create the re-read consumer", extra={"fields": {"error": str(exc)}})
            return None
        try:
            ends = {tp: max(offsets) for tp, offsets in wanted.items()}
            consumer.assign(
                [KafkaTopicPartition(tp.topic, tp.partition, min(o)) for tp, o in wanted.items()]
            )
            while ends and time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None:
                        continue
                    tp = TopicPartition(msg.topic() or "", msg.partition() or 0)
                    offset = msg.offset() or 0
                    if offset in wanted.get(tp, ()):
                        raw = msg.headers() or []
                        headers = tuple(
                            (k, v if isinstance(v, bytes) or v is None else str(v).encode())
                            for k, v in (raw if isinstance(raw, list) else [])
                        )
                        out.append(OriginalEvent(tp, offset, msg.key(), msg.value(), headers))
                    if tp in ends and offset >= ends[tp]:
                        del ends[tp]
        except KafkaException as exc:
            log.error("re-reading source records failed", extra={"fields": {"error": str(exc)}})
            return None
        finally:
            consumer.close()
        if ends:
            log.error(
                "could not re-read the source records in time",
                extra={"fields": {"wanted": total, "read": len(out)}},
            )
            return None
        return out
