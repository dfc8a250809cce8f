"""The one place that decides what is settled, and so what may be committed
(guarantee 1 in docs/guarantees.md).

It owns the offset ledger and the dead-letter sink. Intake tracks each consumed offset
against its unit here; a unit settles only through ``batch_accepted`` (Target accepted
the batch) or a dead-letter sink's confirmation that every letter of a unit landed.
``store`` hands the settled prefix of each partition to the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from consumer.core.completion import Completion
from consumer.core.ledger import DeadLetterUnits, Ledger
from consumer.core.model import DeadLetter, TopicPartition
from consumer.core.seams import DeadLetterSink, Source

DeadLetterSinkFactory = Callable[[Callable[[int], None]], DeadLetterSink]
HeadersOf = Callable[[TopicPartition, int], tuple[tuple[str, bytes | None], ...]]


class Settling:
    def __init__(self, dead_letter_sink: DeadLetterSinkFactory) -> None:
        """``dead_letter_sink(on_settled)`` builds the sink that confirms units to us."""
        self.ledger = Ledger()
        self._units = DeadLetterUnits()
        self.dead_letters = dead_letter_sink(self._dead_letters_landed)
        # The intake's hot path: offset -> unit (a batch id, a dead-letter unit, SETTLED).
        self.track = self.ledger.track
        # Batches that will never settle because the service is stopping for them.
        self.abandoned: set[int] = set()
        # Up to where each partition is known complete in Target (guarantee 13).
        self.completion = Completion()
        # A consumed record's headers by (partition, offset), from the source: records
        # carry none, so a poison record's letter gets them here (None: no headers).
        self.headers_of: HeadersOf | None = None

    def new_unit(self) -> int:
        """A unit settled later by ``on_settled`` of the sink (a repartition write,
        consumer/core/forward.py): it shares the dead letters' id space."""
        return self._units.new()

    def _dead_letters_landed(self, unit: int) -> None:
        self.ledger.settle(unit)

    def batch_accepted(self, batch_id: int) -> None:
        self.completion.accepted(batch_id, self.ledger.unit_partitions(batch_id))
        self.ledger.settle(batch_id)

    def abandon(self, batch_id: int) -> None:
        """``batch_id`` will never settle: settling stops waiting for it (``stop`` policy)."""
        self.abandoned.add(batch_id)

    def dead_letter_record(self, letter: DeadLetter) -> None:
        """A poison record: its offset settles once its dead letter landed."""
        tp, offset = letter.tp, letter.offset
        assert tp is not None and offset is not None
        if self.headers_of is not None and not letter.original_headers:
            headers = self.headers_of(tp, offset)
            if headers:  # replayed as published (guarantee 8)
                letter = replace(letter, original_headers=headers)
        unit = self._units.new()
        self.ledger.track(tp, offset, unit)
        self.dead_letters.send(letter, unit)

    def dead_letter_rows(self, letters: list[DeadLetter], unit: int | None = None) -> None:
        """Rows of a batch Target will not take; ``unit`` (a new one if None) settles when
        all landed, at once when there are none."""
        if unit is None:
            unit = self._units.new()
        for letter in letters:
            self.dead_letters.send(letter, unit)
        if not letters:
            self.ledger.settle(unit)

    def pending(self, tps: set[TopicPartition] | None = None) -> set[int]:
        """Units holding back offsets of ``tps`` (every partition when None)."""
        return self.ledger.pending_units(tps)

    def waiting_for(self, tps: set[TopicPartition] | None = None) -> set[int]:
        """``pending`` without the units that can never settle."""
        return self.ledger.pending_units(tps) - self.abandoned

    def drained(self) -> bool:
        return self.dead_letters.pending == 0 and not self.ledger.pending_units()

    def poll(self) -> None:
        """Serve the dead-letter sink's confirmations (they settle units)."""
        self.dead_letters.poll()

    def store(self, source: Source) -> None:
        offsets = self.ledger.take_committable()
        if offsets:
            self.completion.moved(offsets)
            source.store_offsets(offsets)
        complete = self.completion.take_changed()
        if complete:
            source.store_complete(complete)

    def forget(self, tps: set[TopicPartition]) -> None:
        """Drop partitions (revoked, lost, or rewound to their committed offset)."""
        self.ledger.forget(tps)

    def flush(self, timeout: float) -> int:
        return self.dead_letters.flush(timeout)
