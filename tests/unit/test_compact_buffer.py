"""The compact buffer writes exactly the files the dict-of-cells buffer wrote.

tests/legacy/ keeps the batcher, buffer and carry-forward as they were before rows became
compact (issue 14): for the same events and the same cuts, releases and carry bounds, the
new batcher must answer every call the same way and produce byte-identical batch files.
Events go through validation and rendering first (strings with commas, escapes, line
breaks and non-ASCII, longs, doubles, booleans, nulls and empty strings), with
``occurred_at`` out of order across partitions, near 0, today and near the last millisecond
a packed stamp holds (``MAX_OCCURRED_AT``); and rows of hundreds of distinct stamps (the
wide form of a row's stamps). The legacy code keeps ``(value, occurred_at, source)`` per
cell in dicts, so it shares nothing with how stamps are packed now.

The legacy batcher has no ``width`` cut (issue 17, item 13: tests/unit/test_batch_width.py).
The events here cannot reach it: at most 5 rows and 7 columns per buffer give at most 30
empty cells, against a header of at least 20 bytes plus ids and values, far under the
default ratio of 3. So the comparison runs with the default limits and stays
byte-identical; each cut is checked not to be a width cut, so a change to that arithmetic
shows here instead of silently narrowing what is compared.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.core.batcher import STALE, Batcher, BatchLimits, _lines
from consumer.core.buffer import (
    MAX_OCCURRED_AT,
    SOURCE_BITS,
    Buffer,
    Row,
    cell_stamp,
    insert_sorted,
    pack,
    pack_stamps,
    stamp,
    unpack_stamps,
)
from consumer.core.carry import CarryForward
from consumer.core.model import IdType, ProfileUpdate, TopicPartition
from consumer.core.validate import to_update
from consumer.errors import ValidationError
from consumer.target.wire import ESCAPE_TABLE
from tests.integration.events import NASTY, event
from tests.legacy.batcher import Batcher as LegacyBatcher
from tests.legacy.batcher import BatchLimits as LegacyLimits
from tests.legacy.carry import CarryForward as LegacyCarry
from tests.utils import fold_batches, fold_updates

TPS = [TopicPartition("crm", 0), TopicPartition("pos", 0), TopicPartition("pos", 1)]
_PIDS = ["crm-0001", "José", "a,b&c", "😀-7", "x%41"]
_NAMES = ["tier", "city", "名前", "x&y", "Zoë", "profile.points", "n%20"]
_values = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=6),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
_event = st.fixed_dictionaries(
    {
        "pid": st.sampled_from(_PIDS),
        "id_type": st.sampled_from(["THIRD_PARTY_ID", "PC_ID"]),
        "tp": st.integers(0, len(TPS) - 1),
        "occurred_at": st.integers(0, 6),
        "priority": st.sampled_from(["NORMAL", "URGENT"]),
        "attrs": st.dictionaries(st.sampled_from(_NAMES), _values, min_size=1, max_size=4),
    }
)
_action = st.one_of(
    st.tuples(st.just("add"), _event),
    st.tuples(st.just("add"), _event),
    st.tuples(st.just("add"), _event),
    st.tuples(st.just("tick"), st.floats(0, 3)),
    st.tuples(st.just("release"), st.integers(0, 3)),
    st.tuples(st.just("cut_all"), st.none()),
)


# occurred_at of the events is a base plus 0-6: out of order within a few milliseconds, at
# the epoch, today, and at the top of what a stamp holds.
_BASES = st.sampled_from([0, 1_790_000_000_000, MAX_OCCURRED_AT - 6])


def _update(spec: dict[str, Any], offset: int, base: int = 0) -> ProfileUpdate | None:
    record = event(
        spec["pid"],
        spec["attrs"],
        base + spec["occurred_at"],
        id_type=spec["id_type"],
        priority=spec["priority"],
    )
    try:
        return to_update(record, TPS[spec["tp"]], offset)
    except ValidationError:
        return None


@settings(max_examples=300, deadline=None)
@given(
    max_rows=st.integers(1, 6),
    max_bytes=st.integers(25, 600),
    # No bound that evicts: the legacy carry-forward forgot pending rows, today's waits for
    # their batch to complete (eviction is checked against a model in test_batcher.py).
    carry_max=st.none() | st.just(0) | st.just(10_000),
    actions=st.lists(_action, min_size=5, max_size=60),
    base=_BASES,
)
def test_the_compact_buffer_writes_the_same_files_as_the_dict_buffer(
    max_rows: int, max_bytes: int, carry_max: int | None, actions: list[tuple[str, Any]], base: int
) -> None:
    carry = CarryForward(carry_max) if carry_max is not None else None
    legacy_carry = LegacyCarry(carry_max) if carry_max is not None else None
    new = Batcher(BatchLimits(max_rows, max_bytes, 1.0), carry)
    old = LegacyBatcher(LegacyLimits(max_rows, max_bytes, 1.0), legacy_carry)
    now, offset = 0.0, 0
    cut_ids: list[int] = []
    for kind, arg in actions:
        if kind == "add":
            offset += 1
            update = _update(arg, offset, base)
            if update is None:
                continue
            got, expected = new.add(update, now), old.add(update, now)
            assert (got if isinstance(got, int) else got.value) == (
                expected if isinstance(expected, int) else expected.value
            )
            # What the urgent path would send: the same newest values.
            assert new.winning_attributes(update) == old.winning_attributes(update)
        elif kind == "tick":
            now += arg
            new.cut_due(now)
            old.cut_due(now)
        elif kind == "release" and carry is not None and legacy_carry is not None and cut_ids:
            batch_id = cut_ids[-1 - arg % len(cut_ids)]
            assert carry.release(batch_id) == legacy_carry.release(batch_id)
        elif kind == "cut_all":
            new.cut_all("shutdown")
            old.cut_all("shutdown")
        ready = new.take_ready()
        assert all(b.trigger != "width" for b in ready)
        assert ready == old.take_ready()  # byte-identical bodies, same counts and triggers
        cut_ids.extend(b.batch_id for b in ready)
        assert new.buffered_bytes == old.buffered_bytes
        assert new.buffered_rows_by_type() == old.buffered_rows_by_type()
        if carry is not None and legacy_carry is not None:
            assert (len(carry), carry.pending_profiles) == (
                len(legacy_carry),
                legacy_carry.pending_profiles,
            )
    new.cut_all("shutdown")
    old.cut_all("shutdown")
    assert new.take_ready() == old.take_ready()


@settings(max_examples=200, deadline=None)
@given(specs=st.lists(_event, max_size=40), max_bytes=st.integers(60, 600), base=_BASES)
def test_out_of_order_events_leave_the_newest_value_of_every_attribute(
    specs: list[dict[str, Any]], max_bytes: int, base: int
) -> None:
    # Files applied in the order they were cut hold, per attribute, the value of the
    # newest event by occurred_at (within a partition, the later offset) - the fold.
    batcher = Batcher(BatchLimits(3, max_bytes, 1.0), CarryForward(10_000))
    updates = []
    for n, spec in enumerate(specs):
        update = _update(spec, n, base)
        if update is None:
            continue
        batcher.add(update, 0.0)
        updates.append(update)  # stale ones too: the fold must show they lost
    batcher.cut_all("test")
    files = [b.body for b in batcher.take_ready()]
    assert fold_batches(files) == fold_updates(updates)


def test_a_restored_guard_makes_an_older_event_stale() -> None:
    carry = CarryForward(10)
    carry.restore_guard(IdType.THIRD_PARTY_ID, "crm-0001", {"tier": 500})
    batcher = Batcher(BatchLimits(10, 10_000, 1.0), carry)
    older = _update({**_ev("crm-0001", {"tier": "bronze"}), "occurred_at": 400}, 1)
    newer = _update({**_ev("crm-0001", {"tier": "gold", "city": "Łódź"}), "occurred_at": 600}, 2)
    assert older is not None and newer is not None
    assert batcher.add(older, 0.0) is STALE
    assert isinstance(batcher.add(newer, 0.0), int)


def _ev(pid: str, attrs: dict[str, Any]) -> dict[str, Any]:
    return {"pid": pid, "id_type": "THIRD_PARTY_ID", "tp": 0, "priority": "NORMAL", "attrs": attrs}


@pytest.mark.parametrize("seed", range(3))
def test_a_profile_with_hundreds_of_distinct_stamps_writes_the_same_files(seed: int) -> None:
    # One profile, 1,200 events over two partitions, each setting one of 1,000 attributes at
    # its own occurred_at, shuffled: the row holds more distinct stamps than one byte can
    # index, is cut, carried into the next batch, released into the guard, and merged on.
    rng = random.Random(seed)
    carry, legacy_carry = CarryForward(100), LegacyCarry(100)
    new = Batcher(BatchLimits(10, 1_000_000, 1.0), carry)
    old = LegacyBatcher(LegacyLimits(10, 1_000_000, 1.0), legacy_carry)
    times = list(range(1_200))
    rng.shuffle(times)
    base = rng.choice([1_790_000_000_000, MAX_OCCURRED_AT - 1_200])
    for n, at in enumerate(times):
        spec = {**_ev("crm-0001", {f"a{rng.randrange(1_000)}": f"v{n}"}), "tp": rng.randrange(2)}
        update = _update({**spec, "occurred_at": at}, n, base)
        assert update is not None
        got, expected = new.add(update, 0.0), old.add(update, 0.0)
        assert (got if isinstance(got, int) else got.value) == (
            expected if isinstance(expected, int) else expected.value
        )
        assert new.winning_attributes(update) == old.winning_attributes(update)
        if n in (600, 900):  # cut; the second time, that batch completes
            new.cut_all("test")
            old.cut_all("test")
            files = new.take_ready()
            assert files == old.take_ready()
            seed_row = carry.seed(IdType.THIRD_PARTY_ID, "crm-0001")
            assert seed_row is not None
            assert len(set(unpack_stamps(seed_row[1].stamps))) > 255  # the wide form
            if n == 900:  # the next events meet its stamps in the guard, not a carried row
                batch_id = files[0].batch_id
                assert carry.release(batch_id) == legacy_carry.release(batch_id) == 1
    # One event newer than all sets every attribute: one distinct stamp again (narrow).
    everything = {f"a{i}": f"last {i}" for i in range(1_000)}
    update = _update({**_ev("crm-0001", everything), "occurred_at": 1_200}, 1_200, base)
    assert update is not None
    assert new.add(update, 0.0) == old.add(update, 0.0)
    assert new.winning_attributes(update) == old.winning_attributes(update) == everything
    new.cut_all("test")
    old.cut_all("test")
    assert new.take_ready() == old.take_ready()


_stamps = st.lists(
    st.integers(0, MAX_OCCURRED_AT).map(lambda t: t << SOURCE_BITS)
    | st.integers(0, 2**64 - 1)
    | st.sampled_from([0, 1, 2**64 - 1, stamp(MAX_OCCURRED_AT, 5)]),
    max_size=40,
)


@given(
    values=_stamps | st.lists(st.integers(0, 2**64 - 1), min_size=256, max_size=300, unique=True)
)
def test_packed_stamps_read_back_as_they_were_and_compare_as_numbers(values: list[int]) -> None:
    packed = pack_stamps(values)
    assert unpack_stamps(packed) == values
    for pos, value in enumerate(values):
        assert cell_stamp(packed, pos) == pack(value)
    if len(values) >= 2:
        a, b = values[0], values[-1]
        assert (pack(a) > pack(b)) == (a > b)


def test_an_occurred_at_past_what_a_stamp_holds_is_a_clear_error_and_changes_nothing() -> None:
    batcher = Batcher(BatchLimits(10, 10_000, 1.0), CarryForward(10))
    last = _update({**_ev("crm-0001", {"tier": "gold"}), "occurred_at": 0}, 1, MAX_OCCURRED_AT)
    beyond = _update(
        {**_ev("crm-0001", {"tier": "x", "city": "y"}), "occurred_at": 1},
        2,
        last.occurred_at if last else 0,
    )
    assert last is not None and beyond is not None
    assert isinstance(batcher.add(last, 0.0), int)
    with pytest.raises(OverflowError, match=f"occurred_at {MAX_OCCURRED_AT + 1} is past"):
        batcher.add(beyond, 0.0)
    batcher.cut_all("test")
    (batch,) = batcher.take_ready()
    assert batch.body.endswith(b"thirdPartyId,tier\ncrm-0001,gold\n")


@settings(max_examples=300, deadline=None)
@given(
    table=st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=40, unique=True),
    cells=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    new=st.integers(0, 2**64 - 1),
    wide=st.booleans(),
)
def test_an_older_stamp_is_inserted_in_order_and_every_cell_keeps_its_stamp(
    table: list[int], cells: list[int], new: int, wide: bool
) -> None:
    # insert_sorted reuses index translations of small tables (the usual rows) and builds
    # the others: both must keep every cell on its stamp, the new entry's cells on ``new``.
    table.sort()
    k = len(table)
    index = [c % (k + 1) for c in cells]  # k: the cells the new stamp takes
    packed = b"".join(pack(v) for v in table)
    got, new_table = insert_sorted(index if wide else bytearray(index), packed, pack(new))
    assert isinstance(got, list) == wide
    stamps = [int.from_bytes(new_table[8 * i : 8 * i + 8], "big") for i in range(k + 1)]
    assert stamps == sorted([*table, new])
    assert [stamps[i] for i in got] == [new if i == k else table[i] for i in index]


def _at(occurred_at: int, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "pid": "crm-0001", "id_type": "THIRD_PARTY_ID", "tp": 0,
        "occurred_at": occurred_at, "priority": "NORMAL", "attrs": attrs,
    }  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(specs=st.lists(_event, min_size=1, max_size=40), base=_BASES)
# One partition, out of order: the event at 3 replaces the only cell stamped 5 (a later
# offset of the same partition wins), and goes before it in the table.
@example(specs=[_at(2, {"city": "x"}), _at(5, {"tier": "a"}), _at(3, {"tier": "b"})], base=0)
def test_a_row_keeps_only_the_stamps_its_cells_use_in_order(
    specs: list[dict[str, Any]], base: int
) -> None:
    # Events out of order across partitions insert their stamp in the row's table; a stamp
    # whose every cell a later event replaced must leave the table (the merge relies on
    # it: an event that replaces no cell skips looking for unused entries).
    batcher = Batcher(BatchLimits(1_000, 1_000_000, 1e9), CarryForward(10_000))
    for n, spec in enumerate(specs):
        update = _update(spec, n, base)
        if update is None:
            continue
        batcher.add(update, 0.0)
        for buffer in batcher._buffers.values():
            for row in buffer.rows.values():
                if not row.stamps:
                    continue
                k = row.stamps[-1]
                table = [row.stamps[8 * i : 8 * i + 8] for i in range(k)]
                assert table == sorted(table)
                assert set(row.stamps[8 * k : -1]) == set(range(k))


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 12),
    rows=st.lists(
        st.tuples(st.permutations(range(12)), st.integers(1, 12), st.lists(st.sampled_from(NASTY))),
        min_size=1,
        max_size=30,
    ),
)
def test_a_row_is_padded_the_same_by_its_shape_template(
    width: int, rows: list[tuple[list[int], int, list[str]]]
) -> None:
    # A cut pads a shape met again by a template: every line equals Buffer.line's.
    buffer = Buffer(1, IdType.THIRD_PARTY_ID)
    for n in range(width):
        buffer.add_column(f"c{n}")
    line = _lines(buffer)
    for order, size, texts in rows * 2:  # every shape at least twice
        cells = [c for c in order if c < width][:size]
        values = [
            (texts[i % len(texts)] if texts else "v").translate(ESCAPE_TABLE)
            for i in range(len(cells))
        ]
        row = Row("".join(chr(c) for c in cells), "".join("," + v for v in values), b"", None)
        assert line("id%2C1", row) == buffer.line("id%2C1", row) + "\n"
