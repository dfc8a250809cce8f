"""ProfileChange records survive a trip through the real broker byte for byte.

These also pin down the Kafka fixtures other integration tests build on: keys, partitions,
order, framing, end offsets and committed offsets as the fixtures report them.
"""

from __future__ import annotations

import io
import json
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

pytestmark = pytest.mark.integration

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "profile_change.avsc"


def _without_logical_types(node: Any) -> Any:
    # Read uuid and timestamp-millis as their plain string/long, exactly as they were sent.
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


READER = fastavro.parse_schema(_without_logical_types(json.loads(SCHEMA_FILE.read_text())))

NASTY_VALUES: list[Any] = [
    None,
    "",
    "José Müller",
    "山田 太郎 😀🎉",
    'Zoë, "the" & co',
    "it's 100% + tax",
    "a+b=c&d=e?f#g",
    "%ZZ not an escape, %41 neither",
    "line1\nline2\r\nline3\ttab",
    "nul\x00inside",
    "  padded  ",
    "x" * 5000,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    0.1,
    1e-7,
    -2.5,
    1e300,
    float("inf"),
    True,
    False,
]


def _event(i: int, pid: str, attrs: dict[str, Any], *, id_type: str = "THIRD_PARTY_ID") -> dict:
    return {
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "source": ["POS", "CRM", "OTHER"][i % 3],
        "occurred_at": 1_700_000_000_000 + i,
        "profile": {"id_type": id_type, "id": pid},
        "priority": "URGENT" if i % 5 == 0 else "NORMAL",
        "attributes": attrs,
    }


def _decode(value: bytes) -> dict:
    return fastavro.schemaless_reader(io.BytesIO(value), READER, READER)  # type: ignore[return-value]


def test_nasty_values_round_trip_unchanged(make_topic, produce_profile_changes, consume_topic):
    topic = make_topic(partitions=4)
    pids = ["crm-000001", "José+Müller/42", "a1b2c3d4e5f60718293a4b5c6d7e8f90.28_0", "名前 id"]
    events = []
    for i, value in enumerate(NASTY_VALUES):
        pid = pids[i % len(pids)]
        attrs = {"v": value, "ünïcode name": value, "profile.legacyPrefix": "kept as sent"}
        events.append(_event(i, pid, attrs, id_type="PC_ID" if "." in pid else "THIRD_PARTY_ID"))
    events.append(_event(len(events), "crm-empty", {}))

    positions = produce_profile_changes(topic, events)
    messages = consume_topic(topic, len(events))

    assert len(messages) == len(events)
    by_position = {(m.partition(), m.offset()): m for m in messages}
    assert sorted(by_position) == sorted(positions)
    for event, position in zip(events, positions, strict=True):
        msg = by_position[position]
        assert msg.key() == event["profile"]["id"].encode("utf-8")
        assert _decode(msg.value()) == event


def test_same_profile_lands_in_one_partition_in_order(
    make_topic, produce_profile_changes, consume_topic
):
    topic = make_topic(partitions=4)
    profiles = [f"crm-{p:04d}" for p in range(40)]
    # Interleaved: every profile changes five times, each round touching all profiles.
    events = [
        _event(r * len(profiles) + n, pid, {"seq": r, "tier": f"round {r}"})
        for r in range(5)
        for n, pid in enumerate(profiles)
    ]

    positions = produce_profile_changes(topic, events)
    messages = consume_topic(topic, len(events))

    seen: dict[bytes, list[tuple[int, int, int]]] = defaultdict(list)
    for msg in messages:
        decoded = _decode(msg.value())
        assert msg.key() == decoded["profile"]["id"].encode()
        seen[msg.key()].append((msg.partition(), msg.offset(), decoded["attributes"]["seq"]))
    assert set(seen) == {p.encode() for p in profiles}
    for key, records in seen.items():
        assert len({partition for partition, _, _ in records}) == 1, key
        in_offset_order = [seq for _, _, seq in sorted(records)]
        assert in_offset_order == [0, 1, 2, 3, 4], key
    # Spread over the partitions, or the ordering claim above would be trivially true.
    assert len({partition for partition, _ in positions}) == 4


def test_wire_format_framing_carries_the_schema_id(
    make_topic, produce_profile_changes, consume_topic
):
    topic = make_topic()
    event = _event(1, "crm-framed", {"city": "Zürich"})

    produce_profile_changes(topic, [event], wire_format_schema_id=70001)
    (msg,) = consume_topic(topic, 1)

    value = msg.value()
    assert value[:1] == b"\x00"
    assert struct.unpack(">I", value[1:5]) == (70001,)
    assert _decode(value[5:]) == event


def test_forced_partition_and_end_offsets(make_topic, produce_profile_changes, topic_end_offsets):
    topic = make_topic(partitions=3)
    events = [_event(i, f"crm-{i}", {"n": i}) for i in range(7)]

    positions = produce_profile_changes(topic, events, partition=2)

    assert positions == [(2, offset) for offset in range(7)]
    assert topic_end_offsets(topic) == {0: 0, 1: 0, 2: 7}


def test_consume_topic_reports_extra_records_and_times_out_on_missing(
    make_topic, produce_raw, consume_topic
):
    topic = make_topic(partitions=2)
    produce_raw(topic, [(b"k", b"not avro"), (None, b""), (b"k", None)], headers=[("h", b"1")])

    extra = consume_topic(topic, 2)
    assert len(extra) == 3
    # Same key, same partition: the fixture returns them in offset order, bytes untouched.
    assert [m.value() for m in extra if m.key() == b"k"] == [b"not avro", None]
    assert [m.value() for m in extra if m.key() is None] == [b""]
    assert all(m.headers() == [("h", b"1")] for m in extra)

    with pytest.raises(AssertionError, match="read 3 of 4"):
        consume_topic(topic, 4, timeout=3.0)


def test_committed_offsets_show_what_a_group_committed(
    kafka_bootstrap, make_topic, produce_profile_changes, committed_offsets
):
    topic = make_topic(partitions=2)
    produce_profile_changes(topic, [_event(i, "crm-1", {"n": i}) for i in range(3)], partition=0)
    group = f"g-{topic}"
    assert committed_offsets(group, topic) == {}

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    finally:
        consumer.close()

    assert committed_offsets(group, topic) == {0: 3}
