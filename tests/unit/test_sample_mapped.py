"""The sample POS Purchase and Debezium customers streams, through the example mappings.

The generator writes down what each record must become (``expect``) directly from the
record; the mapping engine, fed the same records as Avro bytes, must agree record by
record, and the folded expectation is what Target must end up holding.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro

from consumer.core.decode import Decoder
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.mapping import Skip, SkipReason, load_file
from sampler.mapped import (
    CUSTOMERS_SCHEMA,
    EXAMPLES,
    PURCHASE_SCHEMA,
    Mapped,
    dump_line,
    expected_mapped_profiles,
    generate_customer_changes,
    generate_purchases,
)

START_MS = 1_767_225_600_000


def through_mapping(records: list[Mapped], schema_file: Path, mapping_file: str) -> list[Any]:
    schema = json.loads(schema_file.read_text("utf-8"))
    parsed = fastavro.parse_schema(schema)
    decoder = Decoder(None, writer_schema=schema)
    mappings = load_file(EXAMPLES / mapping_file)
    out = []
    for offset, record in enumerate(records):
        entry = mappings.for_topic(record.topic)
        assert entry is not None
        decoded = None
        if record.value is not None:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, record.value)
            decoded = decoder.decode(buf.getvalue())
        out.append(entry.apply(decoded, TopicPartition(record.topic, 0), offset, None))
    return out


def test_purchases_map_to_what_the_generator_expects() -> None:
    records = list(generate_purchases(3_000, 300, 5, START_MS))
    outcomes = through_mapping(records, PURCHASE_SCHEMA, "pos_purchase.mapping.yaml")
    for record, outcome in zip(records, outcomes, strict=True):
        if record.expect is None:
            assert outcome == Skip(SkipReason.FILTERED)
        else:
            assert isinstance(outcome, ProfileUpdate)
            assert (outcome.profile_id, outcome.occurred_at) == (record.key, record.occurred_at)
            assert outcome.attributes == record.expect
    totals = [r.expect["lastBasketTotal"] for r in records if r.expect]
    assert any(t.startswith("-") for t in totals)  # refunds are in the stream
    assert all(len(t.split(".")[1]) == 2 for t in totals)  # always two places, never a float
    assert sum(r.expect is None for r in records) > 10  # training tills are filtered


def test_customer_changes_cover_the_debezium_life_cycle() -> None:
    records = list(generate_customer_changes(3_000, 200, 5, START_MS))
    outcomes = through_mapping(records, CUSTOMERS_SCHEMA, "crm_customers.mapping.yaml")
    kinds = Counter("tombstone" if r.value is None else r.value["op"] for r in records)
    assert {"r", "c", "u", "d", "tombstone"} <= set(kinds)
    assert kinds["d"] == kinds["tombstone"]
    for record, outcome in zip(records, outcomes, strict=True):
        if record.value is None:
            assert outcome == Skip(SkipReason.TOMBSTONE)
        elif record.value["op"] == "d":
            assert outcome == Skip(SkipReason.DELETED)
        else:
            assert isinstance(outcome, ProfileUpdate)
            assert outcome.attributes == record.expect
            assert outcome.occurred_at == record.occurred_at


def test_expected_state_is_the_newest_mapped_value_and_deletes_change_nothing() -> None:
    records = list(generate_customer_changes(2_000, 50, 9, START_MS))
    state = expected_mapped_profiles(dump_line(r) for r in records)
    last_image: dict[str, dict[str, str]] = {}
    for record in records:
        if record.expect:
            last_image.setdefault(record.key, {}).update(record.expect)
    assert state == {("THIRD_PARTY_ID", k): v for k, v in last_image.items()}
    deleted = {r.key for r in records if r.value is not None and r.value["op"] == "d"}
    assert deleted and all(("THIRD_PARTY_ID", k) in state for k in deleted)


def test_same_seed_same_records() -> None:
    a = [dump_line(r) for r in generate_purchases(200, 50, 3, START_MS)]
    b = [dump_line(r) for r in generate_purchases(200, 50, 3, START_MS)]
    c = [dump_line(r) for r in generate_purchases(200, 50, 4, START_MS)]
    assert a == b != c
