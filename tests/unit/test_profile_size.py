"""The 64 KB cap holds across batches (issue 17, item 5): what complete batches already
stored for a profile counts, so an event that would push it over is refused (a dead
letter) instead of failing in Target with the rest of its row.

The oracle applies the cut files the way Target does (tests/utils.py ``parse_batch``; the
whole row fails when the profile would pass 65,536 bytes of names and values) and checks
that no row would fail.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.batcher import TOO_LARGE, Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.held import fold, make_guard
from consumer.core.model import BatchFile, IdType
from consumer.core.owner_memory import LoggedCarry, decode_record, encode_stamps
from consumer.core.validate import MAX_PROFILE_BYTES
from tests.utils import make_update, parse_batch

LIMITS = BatchLimits(max_rows=1000, max_bytes=16_000_000, linger_seconds=10)
T3P = IdType.THIRD_PARTY_ID
T0 = 1_700_000_000_000


def _size(attrs: dict[str, str]) -> int:
    return sum(len(n.encode()) + len(v.encode()) for n, v in attrs.items())


class Target:
    """One tenant's profiles as Target applies bulk rows: all or nothing under the cap."""

    def __init__(self) -> None:
        self.profiles: dict[str, dict[str, str]] = {}
        self.failed = 0

    def apply(self, batch: BatchFile) -> None:
        for pid, attrs in parse_batch(batch.body)[1]:
            merged = {**self.profiles.get(pid, {}), **attrs}
            if _size(merged) > MAX_PROFILE_BYTES:
                self.failed += 1
            else:
                self.profiles[pid] = merged


def _near_the_cap() -> dict[str, str]:
    # 29 attributes of 2,000 bytes: 58,145 bytes with their names.
    return {f"big{i:02d}": chr(ord("a") + i % 26) * 2000 for i in range(29)}


def _run(batcher: Batcher, carry: CarryForward, target: Target) -> list[BatchFile]:
    batcher.cut_all("test")
    files = batcher.take_ready()
    for f in files:
        target.apply(f)
        carry.release(f.batch_id)
    return files


def test_events_that_would_push_a_profile_past_64_kb_across_batches_are_refused() -> None:
    carry = CarryForward(1000)
    batcher = Batcher(LIMITS, carry)
    target = Target()
    base = _near_the_cap()
    assert batcher.add(make_update("p", base, occurred_at=T0), 0) == 1
    _run(batcher, carry, target)

    refused = []
    accepted: dict[str, str] = dict(base)
    for n in range(20):  # 20 events of one new 2 KB attribute, four batches of five
        attrs = {f"more{n:02d}": "z" * 2000, "visits": str(n)}
        out = batcher.add(make_update("p", attrs, occurred_at=T0 + 1 + n), 0)
        if _size({**accepted, **attrs}) > MAX_PROFILE_BYTES:
            assert out is TOO_LARGE, n
            refused.append(n)
            # What the dead letter says: how big the profile would be, and how much of it
            # earlier batches already sent.
            total, held = batcher.refused_size
            assert total == _size({**accepted, **attrs}) and held > 50_000
        else:
            assert isinstance(out, int), n
            accepted.update(attrs)
        if n % 5 == 4:
            _run(batcher, carry, target)
        # Small updates of the same profile still go through.
        assert isinstance(batcher.add(make_update("p", {"tier": f"t{n}"}, occurred_at=T0), 0), int)
        accepted["tier"] = f"t{n}"

    _run(batcher, carry, target)
    assert target.failed == 0
    assert len(refused) == 17  # three 2 KB attributes still fit
    assert target.profiles["p"] == accepted


def test_a_new_value_of_an_attribute_replaces_its_old_size() -> None:
    carry = CarryForward(1000)
    batcher = Batcher(LIMITS, carry)
    target = Target()
    base = _near_the_cap()
    batcher.add(make_update("p", base, occurred_at=T0), 0)
    _run(batcher, carry, target)
    # The same attributes with new values of the same size: the profile does not grow.
    for n in range(5):
        update = {"big00": "q" * 2000, "big01": str(n) * 2000}
        assert isinstance(batcher.add(make_update("p", update, occurred_at=T0 + n), 0), int)
        _run(batcher, carry, target)
    assert batcher.add(make_update("p", {"x": "y" * 8000}, occurred_at=T0 + 9), 0) is TOO_LARGE
    assert target.failed == 0


def test_a_new_owner_knows_the_sizes_from_the_changelog() -> None:
    written: list[tuple[bytes, bytes]] = []
    first = LoggedCarry(1000, lambda k, v: written.append((k, v)))
    batcher = Batcher(LIMITS, first)
    batcher.add(make_update("p", _near_the_cap(), occurred_at=T0), 0)
    batcher.cut_all("test")
    batcher.take_ready()

    owner = LoggedCarry(1000, lambda k, v: None)
    for key, value in written:
        owner.restore(key, value)
    after = Batcher(LIMITS, owner)
    assert after.add(make_update("p", {"x": "y" * 8000}, occurred_at=T0 + 1), 0) is TOO_LARGE
    assert isinstance(after.add(make_update("p", {"x": "y" * 5000}, occurred_at=T0 + 1), 0), int)
    # Replacing restored attributes frees their size although their values are unknown.
    replaced = {"big00": "r" * 10, "big01": "s" * 10, "x2": "t" * 3000}
    assert isinstance(after.add(make_update("p", replaced, occurred_at=T0 + 2), 0), int)


def test_changelog_records_of_version_1_are_still_read_without_sizes() -> None:
    v1 = encode_stamps({"tier": 5, "city": -3}, version=1)
    assert decode_record(v1) == ({"tier": 5, "city": -3}, {})
    v2 = encode_stamps({"tier": 5}, {"tier": 1234})
    assert decode_record(v2) == ({"tier": 5}, {"tier": 1234})
    owner = LoggedCarry(10, lambda k, v: None)
    owner.restore(b"thirdPartyId:p", v1)
    guard = owner.guard(T3P, "p")
    assert guard is not None and guard.held == len("tier") + len("city")


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b%20", "名前", "x"]), st.text(min_size=1, max_size=5), min_size=1
        ),
        max_size=8,
    ),
    restored=st.dictionaries(st.sampled_from(["a", "c"]), st.integers(0, 500)),
)
def test_folding_row_by_row_counts_what_counting_from_scratch_counts(
    rows: list[dict[str, str]], restored: dict[str, int]
) -> None:
    guard = make_guard({n: ("", 1) for n in restored}, {n: len(n) + s for n, s in restored.items()})
    for row in rows:
        guard = fold(guard, {n: (v, 2) for n, v in row.items()})
        fresh = make_guard(dict(guard), guard.unknown)
        assert (guard.held, guard.memory, guard.unknown) == (
            fresh.held,
            fresh.memory,
            fresh.unknown,
        )
