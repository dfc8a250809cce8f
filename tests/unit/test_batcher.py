"""The batcher: coalescing, cuts before every limit, size tracking, linger, carry-forward.

The property tests drive the real ``Batcher`` and a deliberately naive model side by side.
The model keeps raw rows and renders the whole file with ``urllib.parse.quote`` every time
it needs a size, so it cannot drift; the real batcher tracks sizes incrementally and must
produce byte-identical files, cut at the same moments.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.batcher import STALE, TOO_LARGE, Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import BatchFile, IdType, ProfileUpdate, TopicPartition
from consumer.core.validate import MAX_PROFILE_BYTES, to_update
from consumer.target.wire import header_line
from tests.integration.events import random_events
from tests.utils import fold, fold_batches, fold_updates, make_update, parse_batch

T3P = IdType.THIRD_PARTY_ID
PC = IdType.PC_ID
CRM0 = TopicPartition("crm.profile-changes", 0)
POS0 = TopicPartition("pos.profile-changes", 0)
POS1 = TopicPartition("pos.profile-changes", 1)
BIG = BatchLimits(max_rows=500_000, max_bytes=16_000_000, linger_seconds=10)


def cut(batcher: Batcher) -> list[BatchFile]:
    batcher.cut_all("test")
    return batcher.take_ready()


def rows_of(batch: BatchFile) -> dict[str, dict[str, str]]:
    _, rows = parse_batch(batch.body)
    return dict(rows)


# ---------------------------------------------------------------- the model


# (raw value, occurred_at, partition)
_MCell = tuple[str, int, TopicPartition]


@dataclass
class _MBuffer:
    batch_id: int
    id_type: IdType
    rows: dict[str, dict[str, _MCell]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    event_count: int = 0
    started_at: float = 0.0
    oldest: int = 0
    newest: int = 0
    # per row: stamps of values sent in earlier batches (the stale-event guard)
    guards: dict[str, dict[str, _MCell]] = field(default_factory=dict)

    def render(self) -> bytes:
        lines = [
            ",".join([f"batch={self.id_type.value}", *(quote(c, safe="") for c in self.columns)])
        ]
        for pid, cells in self.rows.items():
            values = [quote(cells[c][0], safe="") if c in cells else "" for c in self.columns]
            lines.append(",".join([quote(pid, safe=""), *values]))
        return "".join(line + "\n" for line in lines).encode("ascii")


@dataclass
class _MEntry:
    batch_id: int
    cells: dict[str, _MCell]  # what the last row sent, carried while pending
    stamps: dict[str, _MCell]  # every value ever sent for the profile, newest per attribute
    pending: bool = True


class _Model:
    """What the batcher must do, computed the slow and obvious way."""

    def __init__(self, limits: BatchLimits, carry_max: int | None) -> None:
        self.limits = limits
        self.carry_max = carry_max
        self.next_id = 1
        self.buffers = {t: self._new(t) for t in IdType}
        self.carry: OrderedDict[tuple[IdType, str], _MEntry] = OrderedDict()
        self.by_batch: dict[int, list[tuple[IdType, str]]] = {}
        self.evictions = 0
        self.ready: list[BatchFile] = []
        self.unfinished: list[_MBuffer] = []  # cuts carry-forward has not taken yet

    def _new(self, id_type: IdType) -> _MBuffer:
        self.next_id += 1
        return _MBuffer(self.next_id - 1, id_type)

    def add(self, u: ProfileUpdate, now: float) -> int:
        buffer = self.buffers[u.id_type]
        outcome = self._try(buffer, u, now)
        if outcome in ("rows", "bytes"):
            self._cut(buffer, outcome)
            buffer = self.buffers[u.id_type]
            outcome = self._try(buffer, u, now)
            assert outcome in (None, "too_large", "stale")
        if outcome == "stale":
            return STALE
        return TOO_LARGE if outcome == "too_large" else buffer.batch_id

    def _try(self, buffer: _MBuffer, u: ProfileUpdate, now: float) -> str | None:
        new_row = u.profile_id not in buffer.rows
        if new_row and buffer.rows and len(buffer.rows) >= self.limits.max_rows:
            return "rows"
        trial = _MBuffer(
            buffer.batch_id,
            buffer.id_type,
            {pid: dict(cells) for pid, cells in buffer.rows.items()},
            list(buffer.columns),
            guards=dict(buffer.guards),
        )
        if new_row:
            entry = self._carried((u.id_type, u.profile_id))
            trial.rows[u.profile_id] = dict(entry.cells) if entry and entry.pending else {}
            trial.guards[u.profile_id] = dict(entry.stamps) if entry else {}
        cells = trial.rows[u.profile_id]
        guard = trial.guards[u.profile_id]
        for name, value in u.attributes.items():
            stamp = cells.get(name) or guard.get(name)
            if stamp is not None and stamp[2] != u.tp and stamp[1] > u.occurred_at:
                continue  # stale: older, from another partition
            cells[name] = (value, u.occurred_at, u.tp)
        if new_row and not cells:
            return "stale"  # nothing newer than what was sent: no row
        for name in cells:
            if name not in trial.columns:
                trial.columns.append(name)
        raw = sum(len(n.encode()) + len(c[0].encode()) for n, c in cells.items())
        if raw > MAX_PROFILE_BYTES:
            return "too_large"
        if len(trial.render()) >= self.limits.max_bytes and len(trial.rows) > 1:
            return "bytes"
        buffer.rows, buffer.columns, buffer.guards = trial.rows, trial.columns, trial.guards
        if buffer.event_count == 0:
            buffer.started_at = now
            buffer.oldest = buffer.newest = u.occurred_at
        buffer.oldest = min(buffer.oldest, u.occurred_at)
        buffer.newest = max(buffer.newest, u.occurred_at)
        buffer.event_count += 1
        return None

    def _cut(self, buffer: _MBuffer, trigger: str) -> None:
        self.ready.append(
            BatchFile(
                batch_id=buffer.batch_id,
                id_type=buffer.id_type,
                body=buffer.render(),
                row_count=len(buffer.rows),
                event_count=buffer.event_count,
                trigger=trigger,
                oldest_occurred_at=buffer.oldest,
                newest_occurred_at=buffer.newest,
            )
        )
        if self.carry_max is not None and self.carry_max > 0:
            self.unfinished.append(buffer)
        self.buffers[buffer.id_type] = self._new(buffer.id_type)

    def finish_cuts(self) -> list[BatchFile]:
        """What ``take_ready`` hands over. Carry-forward takes a cut's rows when the cut is
        finished, cut by cut, and its bound applies after each."""
        for buffer in self.unfinished:
            keys = []
            for pid, cells in buffer.rows.items():
                key = (buffer.id_type, pid)
                old = self.carry.pop(key, None)
                stamps = {**old.stamps, **cells} if old else dict(cells)
                self.carry[key] = _MEntry(buffer.batch_id, cells, stamps)
                keys.append(key)
            self.by_batch[buffer.batch_id] = keys
            self._evict()
        self.unfinished = []
        ready, self.ready = self.ready, []
        return ready

    def _carried(self, key: tuple[IdType, str]) -> _MEntry | None:
        """Carry-forward's entry as a new row sees it: a cut not finished yet (one made
        inside ``add``) already counts, as a pending entry."""
        entry = self.carry.get(key)
        for buffer in self.unfinished:
            cells = buffer.rows.get(key[1]) if buffer.id_type is key[0] else None
            if cells is not None:
                stamps = {**entry.stamps, **cells} if entry else dict(cells)
                entry = _MEntry(buffer.batch_id, cells, stamps)
        return entry

    def _evict(self) -> None:
        # The least recently sent profile whose batch is complete goes first; a pending
        # one is never forgotten (its attributes could be lost), only passed over.
        assert self.carry_max is not None
        while len(self.carry) > self.carry_max:
            done = [k for k, e in self.carry.items() if not e.pending]
            if not done:
                return
            for key in [k for k, e in self.carry.items() if e.pending]:
                if key == next(iter(self.carry)):
                    self.carry.move_to_end(key)
                else:
                    break
            del self.carry[done[0]]
            self.evictions += 1

    def cut_due(self, now: float) -> None:
        for t in IdType:
            b = self.buffers[t]
            if b.rows and now - b.started_at >= self.limits.linger_seconds:
                self._cut(b, "linger")

    def cut_all(self, trigger: str) -> None:
        for t in IdType:
            if self.buffers[t].rows:
                self._cut(self.buffers[t], trigger)

    def release(self, batch_id: int) -> None:
        for key in self.by_batch.pop(batch_id, []):
            entry = self.carry.get(key)
            if entry is not None and entry.batch_id == batch_id:
                entry.pending = False
        if self.carry_max is not None and self.carry_max > 0:
            self._evict()


# ---------------------------------------------------------------- strategies

# Few profiles and names, so that rows coalesce, carry and go stale often.
_PIDS = ["crm-0001", "José", "a,b&c", "😀-7"]
_NAMES = ["tier", "city", "名前", "x&y", "Zoë"]
_values = st.sampled_from(["gold", "100% + tax", "a\nb", "山田", "1", "true"]) | st.text(
    min_size=1, max_size=8
)
# Built once: a strategy made inside a composite is re-validated on every draw (slow).
_update_spec = st.fixed_dictionaries(
    {
        "pid": st.sampled_from(_PIDS),
        "id_type": st.sampled_from(IdType),
        "tp": st.sampled_from([CRM0, POS0, POS1]),
        "occurred_at": st.integers(0, 4),
        "attributes": st.dictionaries(st.sampled_from(_NAMES), _values, min_size=1, max_size=3),
    }
)


_action = st.one_of(
    st.tuples(st.just("add"), _update_spec),
    st.tuples(st.just("add"), _update_spec),
    st.tuples(st.just("add"), _update_spec),
    st.tuples(st.just("tick"), st.floats(0, 3)),
    st.tuples(st.just("release"), st.integers(0, 3)),
    st.tuples(st.just("release"), st.integers(0, 3)),
    st.tuples(st.just("cut_all"), st.none()),
)
_limits = st.builds(
    BatchLimits,
    max_rows=st.integers(1, 5),
    max_bytes=st.integers(25, 400),
    linger_seconds=st.floats(0.5, 5),
)
_carry_max = st.none() | st.integers(0, 5) | st.just(10_000)


class _Offsets:
    def __init__(self) -> None:
        self.next: dict[TopicPartition, int] = {}

    def update(self, spec: dict[str, Any]) -> ProfileUpdate:
        offset = self.next.get(spec["tp"], 0)
        self.next[spec["tp"]] = offset + 1
        return make_update(
            spec["pid"],
            spec["attributes"],
            occurred_at=spec["occurred_at"],
            id_type=spec["id_type"],
            tp=spec["tp"],
            offset=offset,
        )


def _check_file(batch: BatchFile, limits: BatchLimits) -> None:
    id_type, rows = parse_batch(batch.body)
    assert id_type == batch.id_type.value  # one id type per file, and the right one
    assert len(rows) == batch.row_count
    assert len({pid for pid, _ in rows}) == len(rows), "one row per profile per file"
    # Target rejects a header without attributes; a row without a value sends nothing.
    assert all(attrs for _, attrs in rows), "every row sets at least one attribute"
    assert batch.row_count <= limits.max_rows
    if batch.row_count > 1:
        assert len(batch.body) < limits.max_bytes
    if batch.trigger == "rows":
        assert batch.row_count == limits.max_rows  # cut only when the next row would not fit


@settings(max_examples=200, deadline=None)
@given(limits=_limits, carry_max=_carry_max, actions=st.lists(_action, min_size=10, max_size=50))
def test_batcher_matches_a_model_that_renders_every_file_from_scratch(
    limits: BatchLimits, carry_max: int | None, actions: list[tuple[str, Any]]
) -> None:
    carry = CarryForward(carry_max) if carry_max is not None else None
    real = Batcher(limits, carry)
    model = _Model(limits, carry_max)
    offsets = _Offsets()
    now = 0.0
    cut_ids: list[int] = []
    for kind, arg in actions:
        if kind == "add":
            u = offsets.update(arg)
            assert real.add(u, now) == model.add(u, now)
        elif kind == "tick":
            now += arg
            real.cut_due(now)
            model.cut_due(now)
        elif kind == "release" and carry is not None and cut_ids:
            batch_id = cut_ids[-1 - arg % len(cut_ids)]  # mostly a recent batch
            carry.release(batch_id)
            model.release(batch_id)
        elif kind == "cut_all":
            real.cut_all("shutdown")
            model.cut_all("shutdown")

        ready, expected = real.take_ready(), model.finish_cuts()
        assert ready == expected
        for batch in ready:
            _check_file(batch, limits)
            cut_ids.append(batch.batch_id)
        # Incremental size tracking equals the size of the file as it would be cut now.
        assert real.buffered_bytes == sum(len(b.render()) for b in model.buffers.values())
        assert real.buffered_rows_by_type() == {t: len(b.rows) for t, b in model.buffers.items()}
        starts = [b.started_at for b in model.buffers.values() if b.rows]
        assert real.oldest_started_at() == (min(starts) if starts else None)
        if carry is not None:
            assert len(carry) == len(model.carry)
            assert carry.pending_profiles == sum(e.pending for e in model.carry.values())
            assert carry.evictions == model.evictions

    # The file written for a buffer is exactly the size the batcher tracked for it.
    before = real.buffered_bytes
    files = cut(real)
    empty = sum(len(header_line(t, [])) for t in IdType if t not in {f.id_type for f in files})
    assert before == sum(len(f.body) for f in files) + empty


@settings(max_examples=200, deadline=None)
@given(
    limits=_limits,
    specs=st.lists(st.tuples(_update_spec, st.floats(0, 2)), max_size=40),
)
def test_files_applied_in_order_hold_the_newest_value_of_every_attribute(
    limits: BatchLimits, specs: list[tuple[dict[str, Any], float]]
) -> None:
    # Carry-forward remembers every pending row, so no stale value can come back in a
    # later file: folding the files in order gives the answer of guarantee 2
    # (docs/guarantees.md).
    batcher = Batcher(limits, CarryForward(10_000))
    offsets = _Offsets()
    now = 0.0
    accepted: list[ProfileUpdate] = []
    files: list[BatchFile] = []
    for spec, dt in specs:
        now += dt
        batcher.cut_due(now)
        u = offsets.update(spec)
        assert batcher.add(u, now) != TOO_LARGE
        accepted.append(u)  # a STALE one too: it must change nothing
        files += batcher.take_ready()
    files += cut(batcher)
    assert fold_batches(f.body for f in files) == fold_updates(accepted)
    assert sum(f.event_count for f in files) == len(accepted)


@settings(max_examples=150, deadline=None)
@given(
    limits=_limits,
    specs=st.lists(st.tuples(_update_spec, st.floats(0, 2)), max_size=40),
)
def test_one_partition_needs_no_carry_forward_for_the_newest_value_to_win(
    limits: BatchLimits, specs: list[tuple[dict[str, Any], float]]
) -> None:
    batcher = Batcher(limits)
    offsets = _Offsets()
    now = 0.0
    accepted = []
    files: list[BatchFile] = []
    for spec, dt in specs:
        now += dt
        batcher.cut_due(now)
        u = offsets.update({**spec, "tp": CRM0})
        batcher.add(u, now)
        accepted.append(u)
        files += batcher.take_ready()
    files += cut(batcher)
    assert fold_batches(f.body for f in files) == fold_updates(accepted)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_events_through_validation_and_batching_reach_the_fold_of_the_events(seed: int) -> None:
    # The pure path the integration tests check end to end: the generator's events,
    # rendered and validated, batched under tight limits, applied in order.
    events = random_events(600, profiles=60, seed=seed)
    limits = BatchLimits(max_rows=25, max_bytes=3000, linger_seconds=1)
    batcher = Batcher(limits, CarryForward(1000))
    files: list[BatchFile] = []
    for offset, ev in enumerate(events):
        pid = ev["profile"]["id"]
        tp = TopicPartition("crm.profile-changes", sum(pid.encode()) % 3)  # keyed by profile
        update = to_update(ev, tp, offset)
        if update is not None:
            assert batcher.add(update, now=offset / 100) not in (TOO_LARGE, STALE)
        batcher.cut_due(offset / 100)
        files += batcher.take_ready()
    files += cut(batcher)
    assert {f.trigger for f in files} >= {"rows", "bytes", "linger"}
    for f in files:
        _check_file(f, limits)
    assert fold_batches(f.body for f in files) == fold(events)


# ------------------------------------------- coalescing and guarantee 2 (docs/guarantees.md)


def test_events_of_one_profile_become_one_row_with_the_newest_value_per_attribute() -> None:
    batcher = Batcher(BIG)
    batcher.add(make_update("crm-1", {"tier": "silver", "city": "Lyon"}, offset=1), 0)
    batcher.add(make_update("crm-2", {"tier": "bronze"}, offset=2), 0)
    batcher.add(make_update("crm-1", {"tier": "gold"}, offset=3), 0)
    [batch] = cut(batcher)
    assert batch.row_count == 2 and batch.event_count == 3
    assert rows_of(batch) == {
        "crm-1": {"tier": "gold", "city": "Lyon"},
        "crm-2": {"tier": "bronze"},
    }


def test_third_party_ids_and_pc_ids_go_to_separate_files() -> None:
    batcher = Batcher(BIG)
    batcher.add(make_update("same", {"a": "1"}, id_type=T3P), 0)
    batcher.add(make_update("same", {"a": "2"}, id_type=PC), 0)
    files = cut(batcher)
    assert [(f.id_type, rows_of(f)) for f in files] == [
        (T3P, {"same": {"a": "1"}}),
        (PC, {"same": {"a": "2"}}),
    ]
    assert files[0].body.startswith(b"batch=thirdPartyId,")
    assert files[1].body.startswith(b"batch=pcId,")


def test_across_partitions_an_older_event_does_not_overwrite_a_newer_value() -> None:
    batcher = Batcher(BIG)
    batcher.add(make_update("p", {"tier": "gold"}, occurred_at=200, tp=CRM0), 0)
    batcher.add(make_update("p", {"tier": "silver", "city": "Nice"}, occurred_at=100, tp=POS0), 0)
    assert rows_of(cut(batcher)[0]) == {"p": {"tier": "gold", "city": "Nice"}}


def test_within_a_partition_the_later_offset_wins_whatever_its_timestamp() -> None:
    batcher = Batcher(BIG)
    batcher.add(make_update("p", {"tier": "gold"}, occurred_at=200, tp=POS0, offset=1), 0)
    batcher.add(make_update("p", {"tier": "silver"}, occurred_at=100, tp=POS0, offset=2), 0)
    assert rows_of(cut(batcher)[0]) == {"p": {"tier": "silver"}}


# ---------------------------------------------------------------- cuts before a limit


def test_the_row_past_max_rows_starts_a_new_file() -> None:
    batcher = Batcher(BatchLimits(max_rows=3, max_bytes=16_000_000, linger_seconds=10))
    first = {batcher.add(make_update(f"p{i}", {"a": "1"}), 0) for i in range(3)}
    batcher.add(make_update("p0", {"a": "2"}), 0)  # an existing row: no new row, no cut
    assert batcher.take_ready() == []
    second = batcher.add(make_update("p3", {"a": "1"}), 0)
    [batch] = batcher.take_ready()
    assert (batch.trigger, batch.row_count, batch.event_count) == ("rows", 3, 4)
    assert first == {batch.batch_id} and second != batch.batch_id
    assert rows_of(cut(batcher)[0]) == {"p3": {"a": "1"}}


@pytest.mark.parametrize(("max_bytes", "cuts"), [(32, False), (31, True)])
def test_a_file_is_cut_before_it_would_reach_max_bytes(max_bytes: int, cuts: bool) -> None:
    # "batch=thirdPartyId,a\n" (21) + "p1,x\n" (5) + "p2,x\n" (5) = 31 bytes.
    batcher = Batcher(BatchLimits(max_rows=100, max_bytes=max_bytes, linger_seconds=10))
    batcher.add(make_update("p1", {"a": "x"}), 0)
    batcher.add(make_update("p2", {"a": "x"}), 0)
    ready = batcher.take_ready()
    if cuts:
        assert [(b.trigger, b.body) for b in ready] == [("bytes", b"batch=thirdPartyId,a\np1,x\n")]
        assert [b.body for b in cut(batcher)] == [b"batch=thirdPartyId,a\np2,x\n"]
    else:
        assert ready == []
        assert [b.body for b in cut(batcher)] == [b"batch=thirdPartyId,a\np1,x\np2,x\n"]


@pytest.mark.parametrize(("max_bytes", "cuts"), [(39, False), (38, True)])
def test_a_growing_row_cuts_the_file_before_it_reaches_max_bytes(
    max_bytes: int, cuts: bool
) -> None:
    # A new column widens the header and every row (one comma each), not only its own row:
    # "batch=thirdPartyId,a,bb\n" (24) + "p1,x,yy\n" (8) + "p2,x,\n" (6) = 38 bytes.
    batcher = Batcher(BatchLimits(max_rows=100, max_bytes=max_bytes, linger_seconds=10))
    batcher.add(make_update("p1", {"a": "x"}, offset=1), 0)
    batcher.add(make_update("p2", {"a": "x"}, offset=2), 0)
    batcher.add(make_update("p1", {"bb": "yy"}, offset=3), 0)
    if cuts:
        [first] = batcher.take_ready()
        assert first.body == b"batch=thirdPartyId,a\np1,x\np2,x\n"
        assert [b.body for b in cut(batcher)] == [b"batch=thirdPartyId,bb\np1,yy\n"]
    else:
        assert batcher.take_ready() == []
        assert [b.body for b in cut(batcher)] == [b"batch=thirdPartyId,a,bb\np1,x,yy\np2,x,\n"]


# ---------------------------------------------------------------- linger


def test_linger_cuts_only_buffers_whose_first_event_is_old_enough() -> None:
    batcher = Batcher(BatchLimits(max_rows=100, max_bytes=16_000_000, linger_seconds=10))
    batcher.add(make_update("a", {"x": "1"}, id_type=T3P), now=100.0)
    batcher.add(make_update("b", {"x": "1"}, id_type=PC), now=105.0)
    batcher.add(make_update("a", {"x": "2"}, id_type=T3P), now=109.0)  # does not reset age
    assert batcher.oldest_started_at() == 100.0
    batcher.cut_due(109.99)
    assert batcher.take_ready() == []
    batcher.cut_due(110.0)
    assert [(b.id_type, b.trigger, b.event_count) for b in batcher.take_ready()] == [
        (T3P, "linger", 2)
    ]
    assert batcher.oldest_started_at() == 105.0
    batcher.cut_due(114.99)
    assert batcher.take_ready() == []
    batcher.cut_due(115.0)
    assert [(b.id_type, b.trigger) for b in batcher.take_ready()] == [(PC, "linger")]
    assert batcher.oldest_started_at() is None
    batcher.cut_due(10_000.0)  # empty buffers are never cut
    assert batcher.take_ready() == []


# ---------------------------------------------------------------- 64 KB per profile


def test_an_event_that_would_push_its_row_over_64_kb_is_refused_and_changes_nothing() -> None:
    batcher = Batcher(BIG)
    batcher.add(make_update("p", {"a": "x" * 40_000}, offset=1), 0)
    batcher.add(make_update("q", {"a": "small"}, offset=2), 0)
    size, rows = batcher.buffered_bytes, batcher.buffered_rows
    assert batcher.add(make_update("p", {"b": "y" * 30_000, "c": "z"}, offset=3), 0) == TOO_LARGE
    assert (batcher.buffered_bytes, batcher.buffered_rows) == (size, rows)
    # A replaced value is measured as replaced, not added: this one fits.
    assert batcher.add(make_update("p", {"a": "w" * 65_000}, offset=4), 0) != TOO_LARGE
    [batch] = cut(batcher)
    assert rows_of(batch) == {"p": {"a": "w" * 65_000}, "q": {"a": "small"}}
    assert batch.event_count == 3


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_a_row_may_hold_exactly_64_kb(extra: int, refused: bool) -> None:
    batcher = Batcher(BIG)
    batcher.add(make_update("p", {"a": "x" * 30_000}), 0)  # 30,001 bytes
    fill = "y" * (MAX_PROFILE_BYTES - 30_001 - 1 + extra)  # with "b": 65,536 (+ extra)
    assert (batcher.add(make_update("p", {"b": fill}), 0) == TOO_LARGE) is refused
    assert len(rows_of(cut(batcher)[0])["p"]) == (1 if refused else 2)


def test_a_new_row_over_64_kb_with_its_carried_attributes_is_refused() -> None:
    carry = CarryForward(100)
    batcher = Batcher(BIG, carry)
    batcher.add(make_update("p", {"a": "x" * 40_000}), 0)
    cut(batcher)  # pending: its attributes are carried into p's next row
    size = batcher.buffered_bytes
    assert batcher.add(make_update("p", {"b": "y" * 30_000}), 0) == TOO_LARGE
    assert batcher.buffered_bytes == size and batcher.buffered_rows == 0
    batcher.add(make_update("q", {"c": "1"}), 0)
    assert rows_of(cut(batcher)[0]) == {"q": {"c": "1"}}


def test_the_64_kb_limit_counts_utf8_bytes_of_names_too() -> None:
    # Two events, each under 64 KB alone; together their names are 2 bytes per "é".
    names = [f"{'é' * 240}{i:03d}" for i in range(140)]
    size_of = sum(len(n.encode()) + 1 for n in names)
    assert size_of > MAX_PROFILE_BYTES > sum(len(n) + 1 for n in names)
    batcher = Batcher(BIG)
    assert batcher.add(make_update("p", dict.fromkeys(names[:70], "x")), 0) != TOO_LARGE
    assert batcher.add(make_update("p", dict.fromkeys(names[70:], "x")), 0) == TOO_LARGE
    [batch] = cut(batcher)
    assert len(rows_of(batch)["p"]) == 70


# ---------------------------------------------------------------- carry-forward


def test_a_profile_in_a_pending_batch_carries_its_attributes_into_its_next_row() -> None:
    carry = CarryForward(100)
    batcher = Batcher(BIG, carry)
    batcher.add(make_update("p", {"tier": "silver", "city": "Lyon"}, occurred_at=1), 0)
    batcher.add(make_update("q", {"tier": "bronze"}, occurred_at=1), 0)
    [first] = cut(batcher)
    batcher.add(make_update("p", {"tier": "gold", "points": "10"}, occurred_at=2), 0)
    [second] = cut(batcher)
    assert rows_of(second) == {"p": {"tier": "gold", "city": "Lyon", "points": "10"}}
    # Whichever batch Target applies last, p ends with every attribute at its newest value.
    assert fold_batches([second.body, first.body])[("thirdPartyId", "p")]["tier"] == "silver"
    assert set(fold_batches([first.body, second.body])[("thirdPartyId", "p")]) == {
        "tier",
        "city",
        "points",
    }
    assert fold_batches([second.body])[("thirdPartyId", "p")] == {
        "tier": "gold",
        "city": "Lyon",
        "points": "10",
    }


def test_a_carried_newer_value_beats_an_older_event_from_another_partition() -> None:
    batcher = Batcher(BIG, CarryForward(100))
    batcher.add(make_update("p", {"tier": "gold"}, occurred_at=200, tp=CRM0), 0)
    cut(batcher)
    batcher.add(make_update("p", {"tier": "silver", "city": "Nice"}, occurred_at=100, tp=POS0), 0)
    assert rows_of(cut(batcher)[0]) == {"p": {"tier": "gold", "city": "Nice"}}


@pytest.mark.parametrize("second_complete", [True, False])
def test_rule_2_holds_across_several_earlier_batches(second_complete: bool) -> None:
    # CRM sets the tier (batch completes), later the city; a lagging POS event with an
    # older tier arrives after both were cut: it must not undo the tier.
    carry = CarryForward(100)
    batcher = Batcher(BIG, carry)
    batcher.add(make_update("p", {"tier": "gold"}, occurred_at=200, tp=CRM0, offset=1), 0)
    [first] = cut(batcher)
    carry.release(first.batch_id)
    batcher.add(make_update("p", {"city": "Nice"}, occurred_at=300, tp=CRM0, offset=2), 0)
    [second] = cut(batcher)
    if second_complete:
        carry.release(second.batch_id)
    batcher.add(make_update("p", {"tier": "silver", "zip": "06000"}, occurred_at=100, tp=POS0), 0)
    [third] = cut(batcher)
    state = fold_batches([first.body, second.body, third.body])
    assert state[("thirdPartyId", "p")] == {"tier": "gold", "city": "Nice", "zip": "06000"}


def test_an_event_older_than_everything_sent_for_its_profile_adds_no_row() -> None:
    carry = CarryForward(100)
    batcher = Batcher(BIG, carry)
    batcher.add(make_update("p", {"tier": "gold"}, occurred_at=200, tp=CRM0), 0)
    [first] = cut(batcher)
    carry.release(first.batch_id)
    size = batcher.buffered_bytes
    # Nothing to send and nothing to wait for (the intake settles it at once: test_loop.py).
    assert batcher.add(make_update("p", {"tier": "silver"}, occurred_at=100, tp=POS0), 0) == STALE
    assert (batcher.buffered_rows, batcher.buffered_bytes) == (0, size)
    assert cut(batcher) == []  # no file "batch=thirdPartyId\np\n", which Target rejects


def test_a_released_batch_is_not_carried() -> None:
    carry = CarryForward(100)
    batcher = Batcher(BIG, carry)
    batcher.add(make_update("p", {"tier": "silver", "city": "Lyon"}), 0)
    [first] = cut(batcher)
    assert carry.release(first.batch_id) == 1
    batcher.add(make_update("p", {"tier": "gold"}), 0)
    assert rows_of(cut(batcher)[0]) == {"p": {"tier": "gold"}}


def test_carry_forward_past_its_bound_evicts_the_least_recently_sent_and_counts_it() -> None:
    carry = CarryForward(2)
    batcher = Batcher(BIG, carry)
    for pid in ("old", "mid", "new"):
        batcher.add(make_update(pid, {"a": pid}), 0)
        [batch] = cut(batcher)
        if pid != "new":
            carry.release(batch.batch_id)  # complete: only its guard is left
    assert carry.evictions == 1 and len(carry) == 2 and not carry.over_bound
    for pid in ("old", "new"):
        batcher.add(make_update(pid, {"b": "1"}), 0)
    assert rows_of(cut(batcher)[0]) == {"old": {"b": "1"}, "new": {"a": "new", "b": "1"}}


def test_carry_forward_past_its_bound_never_forgets_a_pending_row_it_asks_for_a_pause() -> None:
    # Forgetting a row whose batch is not complete could let a later batch replace its
    # attributes in Target: the bound waits for completions instead.
    carry = CarryForward(2)
    batcher = Batcher(BIG, carry)
    batches = []
    for pid in ("old", "mid", "new"):
        batcher.add(make_update(pid, {"a": pid}), 0)
        batches += cut(batcher)
    assert carry.evictions == 0 and len(carry) == 3 and carry.over_bound
    batcher.add(make_update("old", {"b": "1"}), 0)
    assert rows_of(cut(batcher)[0]) == {"old": {"a": "old", "b": "1"}}
    carry.release(batches[1].batch_id)  # "mid" complete: it can go, the bound holds again
    assert carry.evictions == 1 and len(carry) == 2 and not carry.over_bound
    assert carry.last_batch(IdType.THIRD_PARTY_ID, "mid") is None


def test_without_carry_forward_a_row_holds_only_its_own_attributes() -> None:
    batcher = Batcher(BIG)
    batcher.add(make_update("p", {"tier": "silver"}), 0)
    cut(batcher)
    batcher.add(make_update("p", {"city": "Lyon"}), 0)
    assert rows_of(cut(batcher)[0]) == {"p": {"city": "Lyon"}}
