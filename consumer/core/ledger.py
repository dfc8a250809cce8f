"""The offset ledger: per partition, commit only what is settled
(guarantee 1 in docs/guarantees.md).

Every consumed offset is tracked against a *unit* that settles it (``UnitKind``): the
batch its row went into (a positive batch id), the dead letters written for it (a negative
id), or ``SETTLED`` for an event that needed nothing (skipped, stale). The
ledger keeps, per partition, runs of consecutive offsets that share a unit, so memory is
per run, not per event. The committable offset of a partition is one past the last
offset of the longest settled prefix.

Pure logic: no Kafka, no clock.
"""

from __future__ import annotations

from collections import deque
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


class _Run:
    __slots__ = ("last", "unit")

    def __init__(self, unit: int, last: int) -> None:
        self.unit = unit
        self.last = last


class Ledger:
    def __init__(self) -> None:
        self._runs: dict[TopicPartition, deque[_Run]] = {}
        self._next: dict[TopicPartition, int] = {}  # committable: next offset to read
        self._unit_tps: dict[int, set[TopicPartition]] = {}
        self._settled: set[int] = {SETTLED}
        self._dirty: set[TopicPartition] = set()
        self._start: dict[TopicPartition, int] = {}  # first offset tracked (unit_offsets)

    def track(self, tp: TopicPartition, offset: int, unit: int) -> None:
        """Record that ``offset`` of ``tp`` is settled by ``unit``. Offsets arrive in order."""
        runs = self._runs.get(tp)
        if runs is None:
            runs = self._runs[tp] = deque()
            self._start[tp] = offset
        if runs and runs[-1].unit == unit:
            runs[-1].last = offset
        else:
            runs.append(_Run(unit, offset))
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
        runs = self._runs.get(tp)
        if not runs:
            return
        settled = self._settled
        moved = False
        while runs and runs[0].unit in settled:
            self._next[tp] = runs.popleft().last + 1
            moved = True
        if moved:
            self._dirty.add(tp)
        if not runs:
            # Nothing pending on this partition: forget settled unit ids nobody refers to.
            self._forget_settled()

    def _forget_settled(self) -> None:
        if len(self._settled) > 1024:
            live = {r.unit for runs in self._runs.values() for r in runs}
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
            runs = self._runs.get(tp)
            if not runs:
                continue
            start = self._next.get(tp, self._start.get(tp, runs[0].last))
            previous_last = start - 1
            for run in runs:
                first = previous_last + 1
                if run.unit == unit:
                    out.setdefault(tp, []).append((first, run.last))
                previous_last = run.last
        return out

    def committable(self, tp: TopicPartition) -> int | None:
        return self._next.get(tp)

    def pending_units(self, tps: set[TopicPartition] | None = None) -> set[int]:
        """Units still holding back offsets (of ``tps``, or of every partition)."""
        selected = self._runs.items() if tps is None else ((tp, self._runs.get(tp)) for tp in tps)
        return {r.unit for _, runs in selected if runs for r in runs if r.unit not in self._settled}

    def forget(self, tps: set[TopicPartition]) -> None:
        """Drop partitions (revoked, or rewound to their committed offset)."""
        for tp in tps:
            self._runs.pop(tp, None)
            self._start.pop(tp, None)
            self._next.pop(tp, None)
            self._dirty.discard(tp)
        for unit, unit_tps in list(self._unit_tps.items()):
            unit_tps -= tps
            if not unit_tps:
                del self._unit_tps[unit]
