"""Carry-forward memory: what is carried, what only guards, what is forgotten and counted."""

from __future__ import annotations

from consumer.core.carry import CarryForward, Cell
from consumer.core.model import IdType

T3P = IdType.THIRD_PARTY_ID
PC = IdType.PC_ID


def cell(value: str, occurred_at: int = 1, src: int = 0) -> Cell:
    return (value, occurred_at, src, len(value) + 4)


def test_nothing_is_carried_for_a_profile_never_sent() -> None:
    carry = CarryForward(10)
    assert carry.seed(T3P, "p") is None
    assert carry.guard(T3P, "p") is None
    assert len(carry) == 0


def test_a_pending_row_is_carried_as_a_copy() -> None:
    carry = CarryForward(10)
    carry.remember(1, T3P, {"p": {"tier": cell("gold")}, "q": {"city": cell("Lyon")}})
    seeded = carry.seed(T3P, "p")
    assert seeded == {"tier": cell("gold")}
    seeded["tier"] = cell("changed")  # a new row mutates its seed...
    assert carry.seed(T3P, "p") == {"tier": cell("gold")}  # ...not the memory
    assert carry.seed(PC, "p") is None  # the id type is part of the profile's identity
    assert (len(carry), carry.pending_profiles) == (2, 2)


def test_a_later_row_replaces_what_is_carried() -> None:
    carry = CarryForward(10)
    carry.remember(1, T3P, {"p": {"tier": cell("gold")}})
    carry.remember(2, T3P, {"p": {"tier": cell("gold"), "city": cell("Nice")}})
    assert carry.seed(T3P, "p") == {"tier": cell("gold"), "city": cell("Nice")}
    assert (len(carry), carry.pending_profiles) == (1, 1)


def test_a_complete_batch_is_no_longer_carried_but_still_guards() -> None:
    carry = CarryForward(10)
    carry.remember(1, T3P, {"p": {"tier": cell("gold", 200)}, "q": {"a": cell("1")}})
    assert carry.release(1) == 2
    assert carry.seed(T3P, "p") is None
    assert carry.guard(T3P, "p") == {"tier": cell("gold", 200)}
    assert (len(carry), carry.pending_profiles) == (2, 0)
    assert carry.release(1) == 0  # releasing twice changes nothing


def test_releasing_an_earlier_batch_keeps_carrying_a_later_one() -> None:
    carry = CarryForward(10)
    carry.remember(1, T3P, {"p": {"tier": cell("gold")}, "q": {"a": cell("1")}})
    carry.remember(2, T3P, {"p": {"tier": cell("gold"), "city": cell("Nice")}})
    assert carry.release(1) == 1  # only q: p was sent again in batch 2
    assert carry.seed(T3P, "p") == {"tier": cell("gold"), "city": cell("Nice")}
    assert carry.seed(T3P, "q") is None
    assert carry.pending_profiles == 1


def test_guards_accumulate_over_several_complete_batches() -> None:
    carry = CarryForward(10)
    carry.remember(1, T3P, {"p": {"tier": cell("gold", 200), "city": cell("Lyon", 200)}})
    carry.release(1)
    carry.remember(2, T3P, {"p": {"city": cell("Nice", 300)}})  # guarded, not carried
    assert carry.seed(T3P, "p") == {"city": cell("Nice", 300)}
    assert carry.guard(T3P, "p") == {"tier": cell("gold", 200), "city": cell("Lyon", 200)}
    carry.release(2)
    assert carry.guard(T3P, "p") == {"tier": cell("gold", 200), "city": cell("Nice", 300)}


def test_past_its_bound_the_least_recently_sent_profile_is_evicted_and_counted() -> None:
    carry = CarryForward(2)
    carry.remember(1, T3P, {"a": {"x": cell("1")}, "b": {"x": cell("1")}})
    carry.release(1)
    carry.remember(2, T3P, {"a": {"x": cell("2")}})  # a is now the most recent
    carry.remember(3, PC, {"c": {"x": cell("3")}})
    assert carry.evictions == 1
    assert carry.guard(T3P, "b") is None and carry.seed(T3P, "b") is None
    assert carry.seed(T3P, "a") == {"x": cell("2")}
    assert carry.seed(PC, "c") == {"x": cell("3")}
    assert (len(carry), carry.pending_profiles) == (2, 2)


def test_evicting_a_pending_profile_stops_counting_it_as_pending() -> None:
    carry = CarryForward(1)
    carry.remember(1, T3P, {"a": {"x": cell("1")}})
    carry.remember(2, T3P, {"b": {"x": cell("1")}})
    assert (carry.evictions, len(carry), carry.pending_profiles) == (1, 1, 1)
    assert carry.release(1) == 0
    assert carry.release(2) == 1
    assert carry.pending_profiles == 0


def test_a_zero_bound_remembers_nothing() -> None:
    carry = CarryForward(0)
    carry.remember(1, T3P, {"p": {"x": cell("1")}})
    assert carry.seed(T3P, "p") is None and carry.guard(T3P, "p") is None
    assert (len(carry), carry.pending_profiles, carry.evictions) == (0, 0, 0)
