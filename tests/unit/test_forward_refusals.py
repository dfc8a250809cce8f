"""The forward stage (repartition mode) refuses what the intake would refuse, at the source.

A dead letter must hold the producer's own record: an occurred_at too far in the future,
or a value that reading B would split, is refused where the source record is converted,
not later where the owner reads the internal repartition record.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer.commands.owner_wiring import source_updates
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.core.seams import Record
from consumer.errors import ValidationError
from consumer.mapping import RecordMapper, load_builtin
from tests.utils import FakeClock

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "profile_change.avsc"
CLOCK = FakeClock(wall=1_767_225_600.0)  # 2026-01-01
TP = TopicPartition("pos.profile-changes", 0)


def record(occurred_at_ms: int, attributes: dict[str, Any]) -> Record:
    event = {
        "event_id": "0b6c7f3e-2f7a-4f57-9e2b-6f9d2d8f6a11",
        "source": "POS",
        "occurred_at": occurred_at_ms,
        "profile": {"id_type": "THIRD_PARTY_ID", "id": "crm-0001"},
        "priority": "NORMAL",
        "attributes": attributes,
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(SCHEMA.read_text())), event)
    return Record(TP.topic, TP.partition, 7, b"crm-0001", buf.getvalue(), None)


def convert(reading: str = "A") -> Any:
    mapper = RecordMapper(load_builtin(), None)
    return source_updates(mapper, clock=CLOCK, max_future_skew_seconds=86400, reading=reading)


def test_an_event_beyond_the_allowed_skew_is_refused_at_the_source() -> None:
    now_ms = int(CLOCK.time() * 1000)
    assert isinstance(convert()(record(now_ms + 3_600_000, {"a": "1"}), TP), ProfileUpdate)
    with pytest.raises(ValidationError) as refused:
        convert()(record(now_ms + 2 * 86_400_000, {"a": "1"}), TP)
    assert refused.value.reason == "invalid_occurred_at"


def test_a_value_reading_b_would_split_is_refused_at_the_source_under_b_only() -> None:
    now_ms = int(CLOCK.time() * 1000)
    rec = record(now_ms, {"a": "x,y"})
    assert isinstance(convert("A")(rec, TP), ProfileUpdate)
    with pytest.raises(ValidationError) as refused:
        convert("B")(rec, TP)
    assert refused.value.reason == "value_unsafe_under_reading_b"
