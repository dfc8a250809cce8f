"""The owner's memory: written to the changelog as a cut is finished, restored by a new owner, and
honoured by the batcher (consumer/core/owner_memory.py, carry.restore_guard)."""

from __future__ import annotations

from consumer.core.batcher import STALE, Batcher, BatchLimits
from consumer.core.model import IdType, TopicPartition
from consumer.core.owner_memory import LoggedCarry, decode_stamps, encode_stamps, parse_key
from consumer.core.placement import use_repartition
from tests.utils import make_update

LIMITS = BatchLimits(max_rows=1000, max_bytes=1_000_000, linger_seconds=1.0)
POS = TopicPartition("pos", 0)
CRM = TopicPartition("crm", 0)


def _owner(log: list[tuple[bytes, bytes]], max_profiles: int = 1000) -> tuple[Batcher, LoggedCarry]:
    carry = LoggedCarry(max_profiles, lambda k, v: log.append((k, v)))
    return Batcher(LIMITS, carry), carry


def test_a_new_owner_refuses_an_event_older_than_what_the_previous_owner_sent() -> None:
    log: list[tuple[bytes, bytes]] = []
    first, _ = _owner(log)
    first.add(make_update("p 1", {"tier": "gold"}, occurred_at=2_000, tp=CRM), 0.0)
    first.add(make_update("p 1", {"city": "Lyon"}, occurred_at=1_500, tp=POS), 0.0)
    first.cut_all("linger")
    first.take_ready()  # the cut is finished: its file written, its changelog records sent
    assert [k for k, _ in log] == [b"thirdPartyId:p 1"]

    second, carry = _owner([])
    for key, value in log:
        carry.restore(key, value)
    # Older than the gold sent: refused, whichever partition it comes from.
    assert (
        second.add(make_update("p 1", {"tier": "silver"}, occurred_at=1_000, tp=POS), 0.0) is STALE
    )
    # Newer: taken.
    batch = second.add(make_update("p 1", {"tier": "platinum"}, occurred_at=2_001, tp=POS), 0.0)
    assert isinstance(batch, int)
    # An attribute the memory does not hold is taken whatever its age.
    assert isinstance(
        second.add(make_update("p 2", {"tier": "x"}, occurred_at=1, tp=POS), 0.0), int
    )


def test_the_changelog_record_holds_every_attribute_sent_so_far_with_its_newest_stamp() -> None:
    log: list[tuple[bytes, bytes]] = []
    batcher, _ = _owner(log)
    batcher.add(make_update("p", {"a": "1", "b": "1"}, occurred_at=10, tp=CRM), 0.0)
    batcher.cut_all("linger")
    batcher.add(make_update("p", {"a": "2"}, occurred_at=20, tp=CRM), 0.0)
    batcher.cut_all("linger")
    batcher.take_ready()
    key, value = log[-1]
    assert parse_key(key) == (IdType.THIRD_PARTY_ID, "p")
    assert decode_stamps(value) == {"a": 20, "b": 10}


def test_restoring_keeps_the_newer_stamp_per_attribute() -> None:
    batcher, carry = _owner([])
    carry.restore(b"pcId:x", encode_stamps({"a": 50, "b": 5}))
    carry.restore(b"pcId:x", encode_stamps({"a": 40, "b": 9}))
    upd = make_update("x", {"a": "old", "b": "new"}, occurred_at=45, id_type=IdType.PC_ID)
    batcher.add(upd, 0.0)
    batcher.cut_all("linger")
    body = batcher.take_ready()[0].body.decode()
    assert body.splitlines()[1].split(",")[1:] == ["new"]  # a refused, b taken


def test_restored_memory_is_bounded_by_the_carry_forward_size() -> None:
    _, carry = _owner([], max_profiles=3)
    for i in range(10):
        carry.restore(f"pcId:{i}".encode(), encode_stamps({"a": i}))
    assert len(carry) == 3
    assert carry.evictions == 7


def test_auto_mode_repartitions_unless_one_topic_is_keyed_by_profile() -> None:
    assert use_repartition("auto", ["a"])[0] is False
    assert use_repartition("auto", ["a", "b"])[0] is True
    assert use_repartition("auto", ["a"], mapping_file="m.yaml")[0] is True
    assert use_repartition("auto", ["a"], keyed_by_profile=lambda t: False)[0] is True
    assert (
        use_repartition("auto", ["a"], mapping_file="m", keyed_by_profile=lambda t: True)[0]
        is False
    )
    assert use_repartition("never", ["a", "b"])[0] is False
    assert use_repartition("always", ["a"])[0] is True
