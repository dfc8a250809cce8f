"""The offset ledger: per partition, commit only what is settled
(guarantee 1 in docs/guarantees.md).

Every consumed offset is tracked against a *unit* that settles it (``UnitKind``): the
batch its row went into (a positive batch id), the dead letters written for it (a negative
id), or ``SETTLED`` for an event that needed nothing (skipped, stale). The
ledger keeps, per partition, runs of consecutive offsets that share a unit, so memory is
per run, not per event. The committable offset of a partition is one past the last
offset of the longest settled prefix.

A partition's runs are two arrays of 64-bit ints, the unit and the last offset of each
run, oldest first: 16 bytes a run instead of a run object and an int for its last offset
(~90 bytes). Runs are many: a partition that interleaves both id types alternates between
two batches (~0.6 runs per buffered profile in bench_memory.py; docs/performance.md).

Pure logic: no Kafka, no clock.
"""

from __future__ import annotations

from array import array
from enum import Enum

from consumer.core.model import TopicPartition

SETTLED = 0  # the unit of events that are settled as soon as they are consumed


class UnitKind(Enum):
    SETTLED = "settled"  # needed nothing: settled when consumed
    BATCH = "batch"  # settled when Target accepted the batch (ids from the batcher, > 0)
    DEAD_LETTERS = "dead_letters"  # settled when the broker confirmed its letters (< 0)


def unit_kind(unit: int) -> UnitKind:
    if unit > 0:
        return UnitKind.BATCH
    return UnitKind.DEAD_LETTERS if unit < 0 else UnitKind.SETTLED


class DeadLetterUnits:
    """Hands out the ids of dead-letter units: negative, so they never meet a batch id."""

    def __init__(self) -> None:
        self._next = -1

    def new(self) -> int:
        unit = self._next
        self._next -= 1
        return unit


class Ledger:
    def __init__(self) -> None:
        # Per partition, the unit and the last offset of each pending run, oldest first.
        self._units: dict[TopicPartition, array[int]] = {}
        self._lasts: dict[TopicPartition, array[int]] = {}
        self._next: dict[TopicPartition, int] = {}  # committable: next offset to read
        self._unit_tps: dict[int, set[TopicPartition]] = {}
        self._settled: set[int] = {SETTLED}
        self._dirty: set[TopicPartition] = set()
        self._start: dict[TopicPartition, int] = {}  # first offset tracked (unit_offsets)

    def track(self, tp: TopicPartition, offset: int, unit: int) -> None:
        """Record that ``offset`` of ``tp`` is settled by ``unit``. Offsets arrive in order."""
        units = self._units.get(tp)
        if units is None:
            units = self._units[tp] = array("q")
            self._lasts[tp] = array("q")
            self._start[tp] = offset
        if units and units[-1] == unit:
            self._lasts[tp][-1] = offset
        else:
            units.append(unit)
            self._lasts[tp].append(offset)
            if unit != SETTLED:
                tps = self._unit_tps.get(unit)
                if tps is None:
                    self._unit_tps[unit] = {tp}
                else:
                    tps.add(tp)
        if unit in self._settled:
            self._advance(tp)

    def settle(self, unit: int) -> None:
        """``unit`` is done (batch accepted, dead letter delivered)."""
        self._settled.add(unit)
        for tp in self._unit_tps.pop(unit, ()):
            self._advance(tp)

    def _advance(self, tp: TopicPartition) -> None:
        units = self._units.get(tp)
        if not units:
            return
        settled = self._settled
        done = 0
        for unit in units:
            if unit not in settled:
                break
            done += 1
        if done:
            lasts = self._lasts[tp]
            self._next[tp] = lasts[done - 1] + 1
            del units[:done], lasts[:done]
            self._dirty.add(tp)
        if not units:
            # Nothing pending on this partition: forget settled unit ids nobody refers to.
            self._forget_settled()

    def _forget_settled(self) -> None:
        if len(self._settled) > 1024:
            live = {unit for units in self._units.values() for unit in units}
            self._settled = {SETTLED} | (self._settled & live)

    def take_committable(self) -> dict[TopicPartition, int]:
        """Offsets to commit (next offset to read) for partitions that moved since last time."""
        out = {tp: self._next[tp] for tp in self._dirty if tp in self._next}
        self._dirty.clear()
        return out

    def unit_partitions(self, unit: int) -> set[TopicPartition]:
        """The partitions ``unit`` still holds offsets of (before it settles)."""
        return set(self._unit_tps.get(unit, ()))

    def unit_offsets(self, unit: int) -> dict[TopicPartition, list[tuple[int, int]]]:
        """The offsets ``unit`` settles, as (first, last) runs per partition. A scan of the
        pending runs: for the rare paths (a rejected batch), not per event."""
        out: dict[TopicPartition, list[tuple[int, int]]] = {}
        for tp in self._unit_tps.get(unit, ()):
            units = self._units.get(tp)
            if not units:
                continue
            lasts = self._lasts[tp]
            start = self._next.get(tp, self._start.get(tp, lasts[0]))
            previous_last = start - 1
            for run_unit, last in zip(units, lasts, strict=True):
                first = previous_last + 1
                if run_unit == unit:
                    out.setdefault(tp, []).append((first, last))
                previous_last = last
        return out

    def committable(self, tp: TopicPartition) -> int | None:
        return self._next.get(tp)

    def pending_units(self, tps: set[TopicPartition] | None = None) -> set[int]:
        """Units still holding back offsets (of ``tps``, or of every partition)."""
        selected = self._units.values() if tps is None else (self._units.get(tp) for tp in tps)
        return {u for units in selected if units for u in units if u not in self._settled}

    def forget(self, tps: set[TopicPartition]) -> None:
        """Drop partitions (revoked, or rewound to their committed offset)."""
        for tp in tps:
            self._units.pop(tp, None)
            self._lasts.pop(tp, None)
            self._start.pop(tp, None)
            self._next.pop(tp, None)
            self._dirty.discard(tp)
        for unit, unit_tps in list(self._unit_tps.items()):
            unit_tps -= tps
            if not unit_tps:
                del self._unit_tps[unit]
