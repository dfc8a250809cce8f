"""The offset ledger (guarantee 1 in docs/guarantees.md):
an offset is committed only when everything up to it settled.

The property test plays random interleavings of track / settle / forget over several
partitions and units against a model that keeps every tracked offset in a plain list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.ledger import SETTLED, Ledger
from consumer.core.model import TopicPartition

TPS = [TopicPartition("crm.profile-changes", 0), TopicPartition("crm.profile-changes", 1),
       TopicPartition("pos.profile-changes", 0)]  # fmt: skip
A, B, C = TPS


@dataclass
class _Model:
    offsets: dict[TopicPartition, list[tuple[int, int]]] = field(default_factory=dict)
    next_offset: dict[TopicPartition, int] = field(default_factory=dict)
    settled: set[int] = field(default_factory=lambda: {SETTLED})
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def committable(self, tp: TopicPartition) -> int | None:
        """One past the longest settled prefix, or None while nothing was ever settled."""
        result = self.committed.get(tp)
        for offset, unit in self.offsets.get(tp, []):
            if unit not in self.settled:
                break
            result = offset + 1
        return result

    def pending_units(self) -> set[int]:
        return {u for entries in self.offsets.values() for _, u in entries} - self.settled

    def unit_offsets(self, unit: int) -> dict[TopicPartition, list[tuple[int, int]]]:
        """(first, last) per run of ``unit``'s offsets; a run starts one past the offset
        tracked before it (a gap belongs to the run after it), or at its own first offset."""
        out: dict[TopicPartition, list[tuple[int, int]]] = {}
        for tp, entries in self.offsets.items():
            runs: list[tuple[int, int]] = []
            for i, (offset, u) in enumerate(entries):
                if u != unit:
                    continue
                if i and entries[i - 1][1] == unit:
                    runs[-1] = (runs[-1][0], offset)
                else:
                    runs.append((entries[i - 1][0] + 1 if i else offset, offset))
            if runs:
                out[tp] = runs
        return out


_op = st.one_of(
    st.tuples(st.just("track"), st.sampled_from(TPS), st.integers(1, 6)),
    st.tuples(st.just("track"), st.sampled_from(TPS), st.integers(1, 6)),
    st.tuples(st.just("track"), st.sampled_from(TPS), st.just(SETTLED)),
    st.tuples(st.just("settle"), st.none(), st.integers(1, 6)),
    st.tuples(st.just("forget"), st.sampled_from(TPS), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=60), st.integers(1, 5))
def test_the_ledger_commits_exactly_the_settled_prefix_of_each_partition(
    ops: list[tuple[str, Any, Any]], gap: int
) -> None:
    ledger = Ledger()
    model = _Model()
    last_reported: dict[TopicPartition, int] = {}
    for op, tp, unit in ops:
        if op == "track":
            if unit in model.settled and unit != SETTLED:
                continue  # a unit (batch, DLQ write) takes no offsets once it settled
            # Offsets grow in a partition, with gaps (compacted topics, transaction markers).
            offset = model.next_offset.get(tp, 0)
            model.next_offset[tp] = offset + gap
            model.offsets.setdefault(tp, []).append((offset, unit))
            ledger.track(tp, offset, unit)
        elif op == "settle":
            model.settled.add(unit)
            ledger.settle(unit)
        else:  # revoked, or rewound to its committed offset
            ledger.forget({tp})
            model.offsets.pop(tp, None)
            model.committed.pop(tp, None)
            last_reported.pop(tp, None)

        taken = ledger.take_committable()
        for tp_ in TPS:
            expected = model.committable(tp_)
            # Reported exactly when it moved, never past an unsettled offset.
            if expected != last_reported.get(tp_):
                assert taken.get(tp_) == expected, (tp_, taken, expected)
            else:
                assert tp_ not in taken
            assert ledger.committable(tp_) == expected
            if expected is not None:
                model.committed[tp_] = expected
                last_reported[tp_] = expected
                unsettled = [o for o, u in model.offsets.get(tp_, []) if u not in model.settled]
                assert all(o >= expected for o in unsettled)
            pending = any(u not in model.settled for _, u in model.offsets.get(tp_, []))
            assert bool(ledger.pending_units({tp_})) == pending
        assert ledger.pending_units() == model.pending_units()
        for u in model.pending_units():  # what a rejected batch dead-letters
            assert ledger.unit_offsets(u) == model.unit_offsets(u)

    # Once everything is settled, every partition commits one past its last offset.
    for u in range(1, 7):
        ledger.settle(u)
    taken = ledger.take_committable()
    for tp, entries in model.offsets.items():
        if entries:
            assert {**last_reported, **taken}[tp] == entries[-1][0] + 1
            assert ledger.pending_units({tp}) == set()
    assert ledger.pending_units() == set()
    assert ledger.take_committable() == {}  # nothing moved since


def test_an_offset_waits_for_an_earlier_unsettled_one() -> None:
    ledger = Ledger()
    ledger.track(A, 10, 1)  # in batch 1
    ledger.track(A, 11, SETTLED)  # skipped event
    ledger.track(A, 12, 2)  # in batch 2
    ledger.settle(2)
    assert ledger.take_committable() == {}
    assert ledger.committable(A) is None
    ledger.settle(1)
    assert ledger.take_committable() == {A: 13}
    assert ledger.take_committable() == {}


def test_a_skipped_event_settles_at_once() -> None:
    ledger = Ledger()
    ledger.track(A, 0, SETTLED)
    ledger.track(A, 1, SETTLED)
    assert ledger.take_committable() == {A: 2}
    assert ledger.pending_units({A}) == set()


def test_a_unit_spanning_partitions_settles_all_of_them() -> None:
    ledger = Ledger()
    ledger.track(A, 5, 7)
    ledger.track(B, 9, 7)
    ledger.track(C, 0, 8)
    assert ledger.pending_units() == {7, 8}
    assert ledger.pending_units({A}) == {7}
    ledger.settle(7)
    assert ledger.take_committable() == {A: 6, B: 10}
    assert ledger.pending_units() == {8}


def test_forgotten_partitions_are_never_committed() -> None:
    ledger = Ledger()
    ledger.track(A, 0, 1)
    ledger.track(B, 0, 1)
    ledger.track(C, 0, SETTLED)  # moved, not yet taken
    ledger.forget({B, C})
    assert ledger.pending_units({B, C}) == set()
    ledger.settle(1)
    assert ledger.take_committable() == {A: 1}
    assert ledger.committable(B) is None and ledger.committable(C) is None
    # Re-assigned later: starts over from what it is given.
    ledger.track(B, 0, 2)
    ledger.settle(2)
    assert ledger.take_committable() == {B: 1}


def test_many_settled_units_are_forgotten_without_losing_pending_ones() -> None:
    # Past 1,024 settled unit ids the ledger prunes them; a unit still referenced by a
    # pending run must survive the pruning.
    ledger = Ledger()
    ledger.track(B, 0, 5000)  # holds B back
    ledger.track(B, 1, 5001)
    ledger.settle(5001)  # settled, but behind the pending 5000
    for unit in range(1, 2000):
        ledger.track(A, unit, unit)
        ledger.settle(unit)
    assert ledger.take_committable() == {A: 2000}
    ledger.settle(5000)
    assert ledger.take_committable() == {B: 2}
    assert ledger.pending_units() == set()


def test_unit_offsets_name_exactly_the_offsets_a_unit_settles() -> None:
    from consumer.core.ledger import Ledger
    from consumer.core.model import TopicPartition

    tp = TopicPartition("t", 0)
    ledger = Ledger()
    for offset, unit in [(5, 1), (6, 1), (7, 2), (8, 1), (9, 1), (10, 3)]:
        ledger.track(tp, offset, unit)
    assert ledger.unit_offsets(1) == {tp: [(5, 6), (8, 9)]}
    ledger.settle(1)  # 5-6 settle; 8-9 wait behind unit 2 at offset 7
    ledger.settle(2)
    ledger.take_committable()
    assert ledger.unit_offsets(3) == {tp: [(10, 10)]}
