"""The repartition stage: source records -> validated updates -> the repartition topic.

In the repartition mode (docs/repartition.md) one consumer reads the source topics and the
repartition topic. ``Forwarder.take`` handles the source records of a consumed list and
returns the others (the repartition topic's), which the intake batches as usual. A source
record is converted exactly as the direct mode does it (``convert``: decode, map,
validate); poison goes to the dead-letter topic, nothing-to-send settles at once, and an
update is written to the repartition topic keyed by its profile. Its source offset
settles when the broker acknowledged that write (one ledger unit, like a dead letter's,
for the updates of one consumed list), so
source offsets are committed only behind acknowledged writes (guarantee 1 in
docs/guarantees.md). Runs on the loop's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from consumer.core import internal_format
from consumer.core.ledger import SETTLED
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.core.seams import Record
from consumer.errors import PoisonError

# Turns a source record into an update (None: nothing to send); raises ``PoisonError``.
Convert = Callable[[Record, TopicPartition], ProfileUpdate | None]
DeadLetter = Callable[[PoisonError, Record, TopicPartition], None]


class Writes(Protocol):
    def forward(self, key: bytes, value: bytes, unit: int) -> None: ...


class Forwarder:
    def __init__(
        self,
        repartition_topic: str,
        *,
        convert: Convert,
        writes: Writes,
        track: Callable[[TopicPartition, int, int], None],
        new_unit: Callable[[], int],
        dead_letter: DeadLetter,
    ) -> None:
        self.topic = repartition_topic
        self.convert = convert
        self.writes = writes
        self.track = track
        self.new_unit = new_unit
        self.dead_letter = dead_letter
        self.forwarded = 0
        self.skipped = 0
        self.poison = 0
        # Source records by (topic, source label) since ``take_counts`` (metrics, summary).
        self.consumed: dict[tuple[str, str], int] = {}

    def take(self, records: list[Record]) -> list[Record]:
        """Forward the source records of ``records``; return the repartition topic's."""
        own = self.topic
        if all(r.topic == own for r in records):
            return records
        owned: list[Record] = []
        tps: dict[tuple[str, int], TopicPartition] = {}
        encode_keyed = internal_format.encode_keyed
        forward = self.writes.forward
        track = self.track
        consumed = self.consumed
        unit = 0  # one unit for every update of this list: it settles when all are acked
        for rec in records:
            topic = rec.topic
            if topic == own:
                owned.append(rec)
                continue
            tp = tps.get((topic, rec.partition))
            if tp is None:
                tp = tps[(topic, rec.partition)] = TopicPartition(topic, rec.partition)
            try:
                update = self.convert(rec, tp)
            except PoisonError as exc:
                self.poison += 1
                ck = (topic, "unknown")
                consumed[ck] = consumed.get(ck, 0) + 1
                self.dead_letter(exc, rec, tp)
                continue
            if update is None:
                self.skipped += 1
                ck = (topic, "OTHER")
                consumed[ck] = consumed.get(ck, 0) + 1
                track(tp, rec.offset, SETTLED)
                continue
            ck = (topic, update.source)
            consumed[ck] = consumed.get(ck, 0) + 1
            if not unit:
                unit = self.new_unit()
            track(tp, rec.offset, unit)
            forward(*encode_keyed(update), unit)
            self.forwarded += 1
        return owned
