"""``RecordMapper``: Kafka record bytes -> update, skip or poison, as the intake will call it."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.core.validate import to_update
from consumer.errors import DecodeError, MappingFailed, MappingSpecError
from consumer.mapping import RecordMapper, Skip, SkipReason, load_builtin, load_file, parse_text

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = SCHEMAS / "examples"


def avro(schema_file: Path, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schema = fastavro.parse_schema(json.loads(schema_file.read_text("utf-8")))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


V2_EVENT = {
    "event_id": "0b6c7f3e-2f7a-4f57-9e2b-6f9d2d8f6a11",
    "source": "ECOM",
    "occurred_at": 1_767_225_600_000,
    "profile": {"id_type": "PC_ID", "id": "7d8f0c41a2b54e36b9f1c2d3e4f5a6b7.35_0"},
    "priority": "URGENT",
    "attributes": {"cartValue": 42.5, "optIn": True, "gone": None},
    "store_id": "store-0001",
}


def test_the_contract_reads_newer_writers_through_its_reader_schema() -> None:
    writer = json.loads((SCHEMAS / "profile_change_v2.avsc").read_text("utf-8"))
    mapper = RecordMapper(load_builtin(), None, writer_schema=writer)
    tp = TopicPartition("crm.profile-changes", 0)
    update = mapper.map(tp, 5, avro(SCHEMAS / "profile_change_v2.avsc", V2_EVENT), None)
    assert isinstance(update, ProfileUpdate)
    assert update.source == "OTHER"  # ECOM is unknown to version 1 readers
    assert update.attributes == {"cartValue": "42.5", "optIn": "true"}
    expected = to_update({**V2_EVENT, "source": "OTHER"}, tp, 5)
    assert update == expected


def test_debezium_tombstones_skip_and_plain_empty_values_are_poison() -> None:
    crm = RecordMapper(load_file(EXAMPLES / "crm_customers.mapping.yaml"), None)
    tp = TopicPartition("crm.public.customers", 1)
    assert crm.map(tp, 9, None, None) == Skip(SkipReason.TOMBSTONE)
    pos = RecordMapper(load_file(EXAMPLES / "pos_purchase.mapping.yaml"), None)
    with pytest.raises(DecodeError):
        pos.map(TopicPartition("pos.purchases", 0), 3, None, None)
    with pytest.raises(DecodeError):
        pos.map(TopicPartition("pos.purchases", 0), 4, b"\xff\xfe not avro", None)


def test_start_up_refuses_unmapped_topics_and_plain_avro_without_a_schema() -> None:
    mappings = parse_text(
        textwrap.dedent(
            """
            mappings:
              - topic: no-schema
                profile: {id: id}
                occurred_at: at
                attributes: {a: v}
            """
        ),
        EXAMPLES,
    )
    mapper = RecordMapper(mappings, None)
    with pytest.raises(MappingSpecError) as caught:
        mapper.require(["no-schema", "elsewhere"])
    assert set(caught.value.problems) == {"no-schema / schema", "elsewhere"}
    with pytest.raises(MappingFailed) as unmapped:
        mapper.map(TopicPartition("elsewhere", 0), 0, b"x", None)
    assert unmapped.value.path == "topic"
