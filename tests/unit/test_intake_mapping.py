"""The loop's intake with a mapping file: skips settle at once and are counted by reason,
records a mapping cannot map are dead-lettered with the path, the contract still flows.

The loop runs in-process against the fakes of tests/utils.py (``Rig`` of test_loop.py),
built from settings exactly as ``profile-sync run`` builds it.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro

from consumer.core.model import TopicPartition
from sampler.mapped import PURCHASE_SCHEMA, mapping_file_text
from tests.unit.test_loop import Rig, event
from tests.utils import parse_batch

CONTRACT = TopicPartition("events", 0)
PURCHASES = TopicPartition("pos.purchases", 0)
WRITER = fastavro.parse_schema(json.loads(PURCHASE_SCHEMA.read_text("utf-8")))


def purchase(number: str, region: str = "North", **changes: Any) -> bytes:
    record: dict[str, Any] = {
        "purchase_id": "R-1",
        "customer": {"number": number, "email": None},
        "store": {"id": "store-0001", "region": region},
        "purchased_at": 1_700_000_000_000,  # the rig clock's now: the future is poison
        "basket_total": Decimal("5.00"),
        "currency": "EUR",
        "payment": None,
        "points_earned": None,
        "items": [],
        **changes,
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, WRITER, record)
    return buf.getvalue()


def rig(tmp_path: Path, edit: tuple[str, str] = ("", "")) -> Rig:
    file = tmp_path / "mapping.yaml"
    text = mapping_file_text([CONTRACT.topic], PURCHASES.topic).replace(*edit)
    file.write_text(text, encoding="utf-8")
    return Rig(mapping_file=str(file), topics=f"{CONTRACT.topic},{PURCHASES.topic}")


def test_filtered_records_settle_at_once_and_are_counted_by_topic_and_reason(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    r.source.produce(PURCHASES, [purchase("crm-1", "TRAINING"), purchase("crm-2", "TRAINING")])
    r.source.assign({PURCHASES})
    r.turns()
    assert r.source.stored[PURCHASES] == 2  # nothing to wait for
    assert r.uploads.submitted == []
    assert (
        r.registry.get_sample_value("profile_sync_mapping_skipped_total", {"reason": "filtered"})
        == 2.0
    )
    assert r.loop.summary.as_dict()["events_skipped_by_mapping"] == 2


def test_mapped_and_contract_records_share_one_batch_and_an_invalid_one_is_dead_lettered(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    r.source.produce(CONTRACT, [event("crm-1", tier="gold")])
    r.source.produce(PURCHASES, [purchase("crm-1"), purchase("  ")])
    r.source.assign({CONTRACT, PURCHASES})
    r.turns(seconds=0)
    r.turns(seconds=r.settings.batch_linger_seconds)
    rows = [row for batch, _ in r.uploads.submitted for row in parse_batch(batch.body)[1]]
    assert len(rows) == 1
    profile_id, attributes = rows[0]
    assert profile_id == "crm-1"
    assert attributes["tier"] == "gold" and attributes["lastBasketTotal"] == "5.00"
    assert r.dead_letters is not None
    (letter,) = r.dead_letters.landed
    assert (letter.reason, letter.tp, letter.offset) == ("invalid_profile_id", PURCHASES, 1)
    assert r.source.stored == {CONTRACT: 1, PURCHASES: 2}


def test_a_record_its_mapping_cannot_map_is_dead_lettered_with_the_path(tmp_path: Path) -> None:
    # The id type comes from a field whose value ("EUR") is no id type.
    r = rig(tmp_path, ("id_type: THIRD_PARTY_ID", "id_type_from: currency"))
    r.source.produce(PURCHASES, [purchase("crm-1")])
    r.source.assign({PURCHASES})
    r.turns()
    r.turns()
    assert r.dead_letters is not None
    (letter,) = r.dead_letters.landed
    assert (letter.reason, letter.stage) == ("mapping_failed", "validate")
    assert letter.extra_headers == (("mapping.path", "currency"),)
    assert r.source.stored == {PURCHASES: 1}
    assert (
        r.registry.get_sample_value(
            "profile_sync_poison_events_total", {"stage": "validate", "reason": "mapping_failed"}
        )
        == 1.0
    )
