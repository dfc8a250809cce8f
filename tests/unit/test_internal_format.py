"""The repartition topic's record format (consumer/core/internal_format.py)."""

from __future__ import annotations

import pytest

from consumer.core import internal_format
from consumer.core.model import IdType, Priority, TopicPartition
from consumer.errors import DecodeError
from tests.utils import make_update

# A record written by the version-1 writer of the first release that had the repartition
# mode. Every later release must still read it (rolling upgrades: a replica of release N+1
# reads what replicas of release N wrote). Do not regenerate it from the current writer.
V1_RECORD = bytes.fromhex(
    "0103"  # version 1, flags: pcId + URGENT
    "d0908cfcd563"  # occurred_at 1712345678888, zigzag LEB128
    "13706f732e70726f66696c652d6368616e676573"  # "pos.profile-changes"
    "03"  # partition 3
    "ac02"  # offset 300
    "0470632d31"  # "pc-1"
    "03504f53"  # "POS"
    "0365762d"  # event id "ev-"
    "02"  # 2 attributes
    "0474696572"
    "04676f6c64"  # tier=gold
    "0a73746f72652e63697479"
    "0a53c3a36f205061756c6f"  # store.city=São Paulo
)


def test_an_update_survives_the_round_trip_with_its_source_coordinates() -> None:
    update = make_update(
        "cust 42/ä",
        {"tier": "gold", "name,with comma": "a\nb", "empty-looking": " "},
        occurred_at=1_712_345_678_901,
        id_type=IdType.THIRD_PARTY_ID,
        tp=TopicPartition("crm.profile-changes", 7),
        offset=123_456_789_012,
        priority=Priority.NORMAL,
    )._replace(source="CRM", event_id="e-1")
    assert internal_format.decode(internal_format.encode(update)) == update


def test_negative_and_zero_timestamps_and_offsets_round_trip() -> None:
    for occurred_at in (0, -1, -1_000_000_000_000, 2**62):
        update = make_update("p", {"a": "1"}, occurred_at=occurred_at, offset=0)
        assert internal_format.decode(internal_format.encode(update)).occurred_at == occurred_at


def test_a_version_1_record_of_an_earlier_release_is_still_read() -> None:
    update = internal_format.decode(V1_RECORD)
    assert update.id_type is IdType.PC_ID
    assert update.profile_id == "pc-1"
    assert update.priority is Priority.URGENT
    assert update.occurred_at == 1_712_345_678_888
    assert update.tp == TopicPartition("pos.profile-changes", 3)
    assert update.offset == 300
    assert update.source == "POS"
    assert update.event_id == "ev-"
    assert update.attributes == {"tier": "gold", "store.city": "São Paulo"}


def test_the_current_writer_still_writes_what_version_1_readers_read() -> None:
    update = internal_format.decode(V1_RECORD)
    assert internal_format.encode(update) == V1_RECORD


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"", "truncated"),
        (b"\x01", "truncated"),
        (b"\x02" + V1_RECORD[1:], "version 2 is not one this release reads"),
        (V1_RECORD[:-3], "malformed"),
        (V1_RECORD + b"\x00", "left over"),
    ],
)
def test_unreadable_records_are_poison_with_a_clear_reason(value: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why) as caught:
        internal_format.decode(value)
    assert caught.value.reason == "internal_format"


def test_the_key_names_the_id_type_and_the_profile() -> None:
    assert internal_format.record_key(IdType.PC_ID, "a:b") == b"pcId:a:b"
    assert internal_format.record_key(IdType.THIRD_PARTY_ID, "ä") == "thirdPartyId:ä".encode()
