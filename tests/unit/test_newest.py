"""``profile-sync verify``'s fold and diff: newest value per attribute, and what differs."""

from __future__ import annotations

from consumer.core.model import IdType, TopicPartition
from consumer.core.newest import Fold, Newest, Status, compare
from tests.utils import make_update

A = TopicPartition("crm", 0)
B = TopicPartition("pos", 0)
T = IdType.THIRD_PARTY_ID


def test_within_a_partition_the_later_offset_wins_even_if_older() -> None:
    fold = Fold()
    fold.add(make_update("p", {"tier": "gold"}, occurred_at=200, tp=A, offset=1))
    fold.add(make_update("p", {"tier": "silver"}, occurred_at=100, tp=A, offset=2))
    assert fold.profiles[(T, "p")]["tier"].value == "silver"


def test_across_partitions_the_newer_event_wins_whatever_the_arrival() -> None:
    fold = Fold()
    fold.add(make_update("p", {"tier": "gold", "city": "Oslo"}, occurred_at=200, tp=A))
    fold.add(make_update("p", {"tier": "silver"}, occurred_at=100, tp=B))
    fold.add(make_update("p", {"city": "Bergen"}, occurred_at=300, tp=B))
    values = {n: v.value for n, v in fold.profiles[(T, "p")].items()}
    assert values == {"tier": "gold", "city": "Bergen"}


def test_only_wanted_profiles_are_kept() -> None:
    fold = Fold(lambda key: key[1] == "p")
    fold.add(make_update("p", {"tier": "gold"}))
    fold.add(make_update("q", {"tier": "gold"}))
    assert list(fold.profiles) == [(T, "p")]


def test_compare_sorts_differences_into_match_lost_superseded_not_found() -> None:
    expected = {
        "tier": Newest("gold", 1, A, 5),
        "city": Newest("Oslo", 1, A, 6),
        "ltv": Newest("10", 1, B, 9),
    }

    def settled(n: Newest) -> bool:
        return n.tp == A  # B's record at offset 9 is not committed yet

    diff = compare((T, "p"), expected, {"tier": "gold", "city": "Bergen"}, settled)
    got = {d.attribute: (d.status, d.held) for d in diff}
    assert got == {
        "tier": (Status.MATCH, "gold"),
        "city": (Status.LOST, "Bergen"),
        "ltv": (Status.SUPERSEDED, None),
    }
    missing = compare((T, "p"), expected, None, settled)
    assert {d.attribute: d.status for d in missing} == {
        "tier": Status.NOT_FOUND,
        "city": Status.NOT_FOUND,
        "ltv": Status.SUPERSEDED,
    }
