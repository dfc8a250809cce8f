"""A cut is finished a few hundred rows at a time (consumer/core/batcher.py, ``take_ready``
with a budget) so that the loop's thread keeps reading urgent events while a large file is
written. What a user relies on: the files, the carry-forward and the changelog are exactly
those of a cut finished at once, whenever the steps run between events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core import batcher as batcher_module
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import BatchFile, IdType, TopicPartition
from consumer.core.owner_memory import LoggedCarry
from tests.unit.test_loop import A, Rig, event
from tests.utils import make_update, parse_batch

POS = TopicPartition("pos", 0)
CRM = TopicPartition("crm", 3)
LIMITS = BatchLimits(max_rows=6, max_bytes=1_000_000, linger_seconds=1.0)

_add = st.tuples(
    st.just("add"),
    st.sampled_from(["p1", "p2", "p 3", "p4", "ü5", "p6", "p7", "p8"]),
    st.dictionaries(
        st.sampled_from(["tier", "city", "points", "opt,in"]),
        st.sampled_from(["gold", "Zürich", "1,5", "", "a&b", "x" * 40]),
        min_size=1,
        max_size=3,
    ),
    st.integers(0, 30),
    st.sampled_from([POS, CRM]),
)
_op = st.one_of(
    _add,
    st.tuples(st.just("cut")),
    st.tuples(st.just("step"), st.integers(1, 5)),
    st.tuples(st.just("release")),
)


class _Side:
    """One batcher and its carry-forward; ``steps`` None finishes every cut at once."""

    def __init__(self, steps: bool) -> None:
        self.log: list[tuple[bytes, bytes]] = []
        self.carry = LoggedCarry(1_000, lambda k, v: self.log.append((k, v)))
        self.batcher = Batcher(LIMITS, self.carry)
        self.steps = steps
        self.files: list[BatchFile] = []
        self.results: list[Any] = []

    def take(self, budget: int | None) -> None:
        self.files += self.batcher.take_ready(budget if self.steps else None)

    def run(self, op: tuple[Any, ...], n: int) -> None:
        if op[0] == "add":
            _, pid, attrs, at, tp = op
            update = make_update(pid, attrs, occurred_at=1_000 + at, tp=tp, offset=n)
            self.results.append(self.batcher.add(update, 0.0))
            if not self.steps:
                self.take(None)
        elif op[0] == "cut":
            self.batcher.cut_all("linger")
            if not self.steps:
                self.take(None)
        elif op[0] == "step":
            self.take(op[1])


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=60))
def test_files_carry_and_changelog_do_not_depend_on_when_the_steps_run(
    ops: list[tuple[Any, ...]],
) -> None:
    at_once, stepped = _Side(steps=False), _Side(steps=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batcher_module, "CUT_STEP_ROWS", 2)  # a 6-row file takes several steps
        for n, op in enumerate(ops):
            if op[0] == "release":
                # Target completes the oldest batch both sides have finished (uploaded).
                done = {f.batch_id for f in stepped.files} & {f.batch_id for f in at_once.files}
                released = sorted(done - getattr(stepped, "released", set()))
                if released:
                    for side in (at_once, stepped):
                        side.carry.release(released[0])
                    stepped.released = {*getattr(stepped, "released", set()), released[0]}
                continue
            at_once.run(op, n)
            stepped.run(op, n)
        for side in (at_once, stepped):
            side.batcher.cut_all("shutdown")
            side.take(None)
    assert stepped.results == at_once.results
    assert [(f.batch_id, f.body, f.event_count) for f in stepped.files] == [
        (f.batch_id, f.body, f.event_count) for f in at_once.files
    ]
    assert stepped.log == at_once.log
    assert stepped.batcher.buffered_rows == 0


def test_a_profile_sent_again_while_its_cut_is_unfinished_still_carries_what_it_sent() -> None:
    carry = CarryForward(1_000)
    batcher = Batcher(BatchLimits(1_000, 1_000_000, 1.0), carry)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batcher_module, "CUT_STEP_ROWS", 10)
        for i in range(100):
            batcher.add(make_update(f"p{i}", {"tier": "gold"}, tp=POS, offset=i), 0.0)
        batcher.cut_all("linger")
        assert batcher.take_ready(10) == []  # one step done: the file is not written yet
        assert batcher.cutting == 1
        assert batcher.buffered_rows == 100  # still held, counted for backpressure
        batcher.add(make_update("p99", {"city": "Lyon"}, tp=POS, offset=100), 0.0)
        (first,) = batcher.take_ready()  # the rest of the cut
        batcher.cut_all("linger")
        (second,) = batcher.take_ready()
    assert len(parse_batch(first.body)[1]) == 100
    assert ("p99", {"tier": "gold"}) in parse_batch(first.body)[1]
    # The new row started from what the unfinished cut sends (carry-forward).
    assert parse_batch(second.body)[1] == [("p99", {"tier": "gold", "city": "Lyon"})]


def test_the_loop_keeps_reading_while_a_large_cut_is_finished_over_several_turns() -> None:
    rig = Rig(batch_linger_seconds="5", consume_batch_size="1000")
    rig.source.produce(A, [event(f"p{i}", tier="gold") for i in range(4_000)])
    rig.source.assign({A})
    rig.turns(4)  # 4,000 events buffered
    rig.turns(seconds=5)  # the linger cut; 1,000 rows of its work are done in this turn
    assert rig.uploads.submitted == []
    assert rig.loop.batcher.cutting == 1
    rig.source.produce(A, [event("p7", city="Lyon")])
    rig.turns()  # the next event is read before the cut is finished
    assert rig.loop.batcher.buffered_rows_by_type()[IdType.THIRD_PARTY_ID] == 4_001
    for _ in range(20):
        if rig.uploads.submitted:
            break
        rig.turns()
    ((batch, _),) = rig.uploads.submitted
    assert len(parse_batch(batch.body)[1]) == 4_000
    rig.turns(seconds=5)
    assert parse_batch(rig.uploads.submitted[-1][0].body)[1] == [
        ("p7", {"tier": "gold", "city": "Lyon"})
    ]
    rig.turns()
    assert rig.source.stored[A] == 4_001


def test_a_profile_keeps_its_guard_while_a_stepped_cut_pushes_carry_forward_past_its_bound() -> (
    None
):
    carry = CarryForward(3)  # three profiles at most
    batcher = Batcher(BatchLimits(1_000, 1_000_000, 1.0), carry)
    batcher.add(make_update("p", {"tier": "gold"}, occurred_at=100, tp=CRM), 0.0)
    batcher.cut_all("linger")
    (first,) = batcher.take_ready()
    carry.release(first.batch_id)  # complete: "gold at 100" now guards p
    for i in range(5):
        batcher.add(make_update(f"x{i}", {"tier": "silver"}, occurred_at=200, tp=CRM), 0.0)
    batcher.add(make_update("p", {"city": "Lyon"}, occurred_at=200, tp=CRM), 0.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batcher_module, "CUT_STEP_ROWS", 2)
        batcher.cut_all("linger")
        while not batcher.take_ready(2):  # p's row comes last, after the bound is crossed
            pass
    # Cut at once, p's new row would have been remembered before anything was forgotten:
    # an older tier from another partition still loses against the gold sent.
    batcher.add(make_update("p", {"tier": "bronze"}, occurred_at=50, tp=POS), 0.0)
    batcher.cut_all("linger")
    (third,) = batcher.take_ready()
    assert parse_batch(third.body)[1] == [("p", {"city": "Lyon"})]


def test_the_turns_that_read_records_are_timed_for_operators() -> None:
    rig = Rig()
    rig.source.produce(A, [event("p1"), event("p2")])
    rig.source.assign({A})
    rig.turns(3)  # one turn reads both records, two find nothing
    assert rig.gauge("loop_turn_seconds_count") == 1
