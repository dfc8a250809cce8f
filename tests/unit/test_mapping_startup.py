"""What ``profile-sync run`` does with its mapping before it consumes anything."""

from __future__ import annotations

import io
import json
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer import config
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.errors import MappingSpecError
from consumer.mapping import Skip, SkipReason
from consumer.mapping.startup import build_mapper, load_mappings
from sampler.mapped import CUSTOMERS_SCHEMA, PURCHASE_SCHEMA, mapping_file_text

REQUIRED = {
    "PROFILE_SYNC_TARGET_URL": "http://127.0.0.1:8080",
    "PROFILE_SYNC_TARGET_CLIENT": "acmeretail",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
}


def settings(topics: str, mapping: Path | None = None) -> config.Settings:
    env = {**REQUIRED, "PROFILE_SYNC_TOPICS": topics}
    if mapping is not None:
        env["PROFILE_SYNC_MAPPING_FILE"] = str(mapping)
    return config.load(env)


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "mapping.yaml"
    file.write_text(text, encoding="utf-8")
    return file


class LatestOnly:
    """A registry that only answers the start-up question: the latest schema of a subject."""

    def __init__(self, latest: dict[str, dict[str, Any]]) -> None:
        self.latest = latest
        self.asked: list[str] = []

    def latest_schema(self, subject: str) -> dict[str, Any] | None:
        self.asked.append(subject)
        return self.latest.get(subject)

    def read_schema_id(self, buf: BytesIO) -> int:
        raise AssertionError("no record is decoded at start-up")

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        raise AssertionError("no record is decoded at start-up")


def test_without_a_mapping_file_every_topic_reads_the_contract_keyed_by_profile() -> None:
    s = settings("pos.profile-changes,crm.profile-changes")
    mapper = build_mapper(s, None)  # the bundled contract mapping fits the bundled schema
    assert mapper.keyed_by_profile("pos.profile-changes")
    assert load_mappings(s).keyed_by_profile("crm.profile-changes")


def test_a_user_entry_is_keyed_by_profile_only_when_it_says_so(tmp_path: Path) -> None:
    text = mapping_file_text(["events"], "pos.purchases", "crm.public.customers")
    text = text.replace(
        "  schema: " + str(CUSTOMERS_SCHEMA),
        "  keyed_by_profile: true\n  schema: " + str(CUSTOMERS_SCHEMA),
    )
    s = settings("events,pos.purchases,crm.public.customers", write(tmp_path, text))
    mapper = build_mapper(s, None)
    assert [mapper.keyed_by_profile(t) for t in s.topics] == [True, False, True]


def test_a_topic_without_an_entry_is_refused_by_name(tmp_path: Path) -> None:
    file = write(tmp_path, mapping_file_text(["events"], "pos.purchases"))
    with pytest.raises(MappingSpecError) as caught:
        build_mapper(settings("events,pos.purchases,crm.public.customers", file), None)
    assert caught.value.problems == {
        "crm.public.customers": "no entry of the mapping file maps this topic"
    }


def test_an_entry_that_does_not_fit_its_schema_file_names_topic_entry_and_path(
    tmp_path: Path,
) -> None:
    text = mapping_file_text([], "pos.purchases").replace("store.id", "store.number")
    with pytest.raises(MappingSpecError) as caught:
        build_mapper(settings("pos.purchases", write(tmp_path, text)), None)
    (where,) = caught.value.problems
    assert where == "pos.purchases / lastPurchaseStore / store.number"
    assert "no field 'number' in store" in caught.value.problems[where]


def test_with_a_registry_the_latest_registered_schema_is_what_is_checked(
    tmp_path: Path,
) -> None:
    file = write(tmp_path, mapping_file_text([], "pos.purchases", "crm.public.customers"))
    purchase = json.loads(PURCHASE_SCHEMA.read_text("utf-8"))
    without_id = {**purchase, "fields": [f for f in purchase["fields"] if f["name"] != "customer"]}
    s = settings("pos.purchases,crm.public.customers", file)

    fine = LatestOnly({"pos.purchases-value": purchase})  # customers: nothing registered yet
    build_mapper(s, fine)
    assert fine.asked == ["pos.purchases-value", "crm.public.customers-value"]

    with pytest.raises(MappingSpecError) as caught:
        build_mapper(s, LatestOnly({"pos.purchases-value": without_id}))
    assert "pos.purchases / profile.id / customer.number" in caught.value.problems
    assert (
        "[pos.purchases-value latest]"
        in caught.value.problems["pos.purchases / profile.id / customer.number"]
    )


def test_the_mapper_maps_a_debezium_delete_and_tombstone_to_skips(tmp_path: Path) -> None:
    file = write(tmp_path, mapping_file_text([], customers_topic="crm.public.customers"))
    mapper = build_mapper(settings("crm.public.customers", file), None)
    schema = fastavro.parse_schema(json.loads(CUSTOMERS_SCHEMA.read_text("utf-8")))
    tp = TopicPartition("crm.public.customers", 0)
    source = {
        "version": "2", "connector": "postgresql", "name": "crm", "ts_ms": 1, "snapshot": None,
        "db": "crm", "schema": "public", "table": "customers", "lsn": None,
    }  # fmt: skip
    row = {
        "id": 1, "customer_number": "crm-1", "first_name": "Eva", "email": None, "city": None,
        "loyalty_tier": None, "email_opt_in": None, "birth_date": None, "credit_limit": None,
        "updated_at": 5_000_000,
    }  # fmt: skip

    def encoded(op: str, before: Any, after: Any) -> bytes:
        buf = io.BytesIO()
        value = {"before": before, "after": after, "source": source, "op": op, "ts_ms": 2}
        fastavro.schemaless_writer(buf, schema, value)
        return buf.getvalue()

    created = mapper.map(tp, 0, encoded("c", None, row), 10)
    assert isinstance(created, ProfileUpdate)
    assert (created.profile_id, created.attributes, created.occurred_at) == (
        "crm-1",
        {"crmFirstName": "Eva"},
        5_000,
    )
    assert mapper.map(tp, 1, encoded("d", row, None), 10) == Skip(SkipReason.DELETED)
    assert mapper.map(tp, 2, None, 10) == Skip(SkipReason.TOMBSTONE)
