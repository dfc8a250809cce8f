"""Carry-forward memory: what is carried, what only guards, what is forgotten and counted."""

from __future__ import annotations

from consumer.core.buffer import (
    NO_SOURCE,
    SOURCE_MASK,
    Row,
    pack_stamps,
    stamp,
    stamp_time,
    unpack_stamps,
)
from consumer.core.carry import CarryForward
from consumer.core.model import IdType

T3P = IdType.THIRD_PARTY_ID
PC = IdType.PC_ID

Cell = tuple[str, int, int]  # (encoded value, occurred_at, source)


def cell(value: str, occurred_at: int = 1, src: int = 0) -> Cell:
    return (value, occurred_at, src)


class Batch:
    """Builds what a cut gives ``remember``: one column list, compact rows indexing it."""

    def __init__(self, rows: dict[str, dict[str, Cell]]) -> None:
        self.names: list[str] = list(dict.fromkeys(n for cells in rows.values() for n in cells))
        self.rows = {
            pid: Row(
                "".join(chr(self.names.index(n)) for n in cells),
                "".join("," + c[0] for c in cells.values()),
                pack_stamps([stamp(c[1], c[2]) for c in cells.values()]),
                None,
            )
            for pid, cells in rows.items()
        }


def remember(
    carry: CarryForward, batch_id: int, id_type: IdType, rows: dict[str, dict[str, Cell]]
) -> None:
    batch = Batch(rows)
    carry.remember(batch_id, id_type, batch.names, batch.rows)


def seeded(carry: CarryForward, id_type: IdType, pid: str) -> dict[str, Cell] | None:
    """What a new row of ``pid`` starts from, read back as cells."""
    seed = carry.seed(id_type, pid)
    if seed is None:
        return None
    names, row = seed
    values = row.vals.split(",")[1:]
    return {
        names[ord(c)]: (v, stamp_time(s), s & SOURCE_MASK)
        for c, v, s in zip(row.cols, values, unpack_stamps(row.stamps), strict=True)
    }


def guarded(carry: CarryForward, id_type: IdType, pid: str) -> dict[str, tuple[int, int]] | None:
    guard = carry.guard(id_type, pid)
    return (
        None
        if guard is None
        else {n: (stamp_time(s), s & SOURCE_MASK) for n, (_, s) in guard.items()}
    )


def test_nothing_is_carried_for_a_profile_never_sent() -> None:
    carry = CarryForward(10)
    assert seeded(carry, T3P, "p") is None
    assert carry.guard(T3P, "p") is None
    assert len(carry) == 0


def test_a_pending_row_is_carried() -> None:
    carry = CarryForward(10)
    remember(carry, 1, T3P, {"p": {"tier": cell("gold")}, "q": {"city": cell("Lyon")}})
    assert seeded(carry, T3P, "p") == {"tier": cell("gold")}
    assert seeded(carry, PC, "p") is None  # the id type is part of the profile's identity
    assert (len(carry), carry.pending_profiles) == (2, 2)


def test_a_later_row_replaces_what_is_carried() -> None:
    carry = CarryForward(10)
    remember(carry, 1, T3P, {"p": {"tier": cell("gold")}})
    remember(carry, 2, T3P, {"p": {"tier": cell("gold"), "city": cell("Nice")}})
    assert seeded(carry, T3P, "p") == {"tier": cell("gold"), "city": cell("Nice")}
    assert (len(carry), carry.pending_profiles) == (1, 1)


def test_a_complete_batch_is_no_longer_carried_but_still_guards() -> None:
    carry = CarryForward(10)
    remember(carry, 1, T3P, {"p": {"tier": cell("gold", 200)}, "q": {"a": cell("1")}})
    assert carry.release(1) == 2
    assert seeded(carry, T3P, "p") is None
    assert guarded(carry, T3P, "p") == {"tier": (200, 0)}
    guard = carry.guard(T3P, "p")
    assert guard is not None and guard["tier"][0] == "gold"  # the value sent, for the audit
    assert (len(carry), carry.pending_profiles) == (2, 0)
    assert carry.release(1) == 0  # releasing twice changes nothing


def test_releasing_an_earlier_batch_keeps_carrying_a_later_one() -> None:
    carry = CarryForward(10)
    remember(carry, 1, T3P, {"p": {"tier": cell("gold")}, "q": {"a": cell("1")}})
    remember(carry, 2, T3P, {"p": {"tier": cell("gold"), "city": cell("Nice")}})
    assert carry.release(1) == 1  # only q: p was sent again in batch 2
    assert seeded(carry, T3P, "p") == {"tier": cell("gold"), "city": cell("Nice")}
    assert seeded(carry, T3P, "q") is None
    assert carry.pending_profiles == 1


def test_guards_accumulate_over_several_complete_batches() -> None:
    carry = CarryForward(10)
    remember(carry, 1, T3P, {"p": {"tier": cell("gold", 200), "city": cell("Lyon", 200)}})
    carry.release(1)
    remember(carry, 2, T3P, {"p": {"city": cell("Nice", 300)}})  # guarded, not carried
    assert seeded(carry, T3P, "p") == {"city": cell("Nice", 300)}
    assert guarded(carry, T3P, "p") == {"tier": (200, 0), "city": (200, 0)}
    carry.release(2)
    assert guarded(carry, T3P, "p") == {"tier": (200, 0), "city": (300, 0)}


def test_past_its_bound_the_least_recently_sent_profile_is_evicted_and_counted() -> None:
    carry = CarryForward(2)
    remember(carry, 1, T3P, {"a": {"x": cell("1")}, "b": {"x": cell("1")}})
    carry.release(1)
    remember(carry, 2, T3P, {"a": {"x": cell("2")}})  # a is now the most recent
    remember(carry, 3, PC, {"c": {"x": cell("3")}})
    assert carry.evictions == 1
    assert carry.guard(T3P, "b") is None and seeded(carry, T3P, "b") is None
    assert seeded(carry, T3P, "a") == {"x": cell("2")}
    assert seeded(carry, PC, "c") == {"x": cell("3")}
    assert (len(carry), carry.pending_profiles) == (2, 2)


def test_a_pending_profile_is_evicted_only_once_its_batch_is_complete() -> None:
    carry = CarryForward(1)
    remember(carry, 1, T3P, {"a": {"x": cell("1")}})
    remember(carry, 2, T3P, {"b": {"x": cell("1")}})
    assert (carry.evictions, len(carry), carry.pending_profiles) == (0, 2, 2)
    assert carry.over_bound  # the loop pauses consumption
    assert carry.release(1) == 1
    assert (carry.evictions, len(carry), carry.pending_profiles) == (1, 1, 1)
    assert not carry.over_bound and seeded(carry, T3P, "b") == {"x": cell("1")}
    assert carry.release(2) == 1
    assert carry.pending_profiles == 0


def test_a_zero_bound_remembers_nothing() -> None:
    carry = CarryForward(0)
    remember(carry, 1, T3P, {"p": {"x": cell("1")}})
    assert seeded(carry, T3P, "p") is None and carry.guard(T3P, "p") is None
    assert (len(carry), carry.pending_profiles, carry.evictions) == (0, 0, 0)


def test_a_restored_guard_makes_older_events_from_any_partition_stale() -> None:
    carry = CarryForward(10)
    carry.restore_guard(T3P, "p", {"tier": 200})
    assert guarded(carry, T3P, "p") == {"tier": (200, NO_SOURCE)}
    assert seeded(carry, T3P, "p") is None  # nothing pending: only a guard
    remember(carry, 1, T3P, {"p": {"tier": cell("gold", 300, 2)}})
    carry.release(1)
    carry.restore_guard(T3P, "p", {"tier": 100, "city": 50})  # older: the newer stamp stays
    assert guarded(carry, T3P, "p") == {"tier": (300, 2), "city": (50, NO_SOURCE)}
    assert (len(carry), carry.pending_profiles) == (1, 0)
