"""``profile-sync mapping preview|check`` against the real broker and a Schema Registry.

The records are produced by ``produce-sample --purchases/--customer-changes`` as a user
would, and the commands run as subprocesses: preview must print what the example mappings
make of each record, leave no committed offset behind, and show a record whose schema lost
the mapped id as the dead letter it would be; check must fail on that evolved schema.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from sampler.mapped import EXAMPLES

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PREVIEW_GROUP = "profile-sync-mapping-preview"
START_MS = 1_767_225_600_000


def cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROFILE_SYNC_", "KAFKA_"))}
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def mapping_for(tmp_path: Path, example: str, old_topic: str, topic: str) -> Path:
    """The example mapping file, pointed at this test's topic."""
    text = (EXAMPLES / example).read_text("utf-8").replace(f"topic: {old_topic}", f"topic: {topic}")
    text = text.replace("schema: ", f"schema: {EXAMPLES}/")
    file = tmp_path / example
    file.write_text(text, encoding="utf-8")
    return file


def read_dump(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def preview(mapping: Path, bootstrap: str, topic: str, count: int, *extra: str) -> list[Any]:
    done = cli(
        "mapping", "preview", "--mapping-file", str(mapping), "--bootstrap-servers", bootstrap,
        "--topic", topic, "--count", str(count), "--format", "json", *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_preview_shows_the_updates_of_pos_purchases_and_commits_nothing(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    committed_offsets: Callable[[str, str], dict[int, int]],
    tmp_path: Path,
) -> None:
    topic = make_topic(partitions=2, prefix="pos-purchases")
    dump = tmp_path / "dump.jsonl"
    produced = cli(
        "produce-sample", "--no-progress", "--bootstrap-servers", kafka_bootstrap,
        "--count", "0", "--purchases", "120", "--topic-purchases", topic, "--profiles", "40",
        "--seed", "11", "--start-ms", str(START_MS), "--dump", str(dump),
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    expected = {(r["key"], r["occurred_at"]): r["expect"] for r in read_dump(dump)}
    mapping = mapping_for(tmp_path, "pos_purchase.mapping.yaml", "pos.purchases", topic)

    rows = preview(mapping, kafka_bootstrap, topic, 120)

    assert len(rows) == 120
    assert {row["partition"] for row in rows} == {0, 1}
    for row in rows:
        expect = expected[(row["key"], row.get("occurred_at"))] if "occurred_at" in row else None
        if row["outcome"] == "skip":
            assert row["reason"] == "filtered"
            continue
        assert row["outcome"] == "update", row
        assert row["attributes"] == expect
        assert row["profile_id"] == row["key"]
        assert row["id_type"] == "thirdPartyId"
    amounts = [row["attributes"]["lastBasketTotal"] for row in rows if row["outcome"] == "update"]
    assert all(Decimal(a) == Decimal(a).quantize(Decimal("0.01")) for a in amounts)
    assert committed_offsets(PREVIEW_GROUP, topic) == {}

    table = cli(
        "mapping", "preview", "--mapping-file", str(mapping), "--bootstrap-servers",
        kafka_bootstrap, "--topic", topic, "--count", "5", "--from", "end",
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == [
        "PARTITION:OFFSET", "OUTCOME", "PROFILE", "PRIORITY", "OCCURRED_AT", "ATTRIBUTES",
    ]  # fmt: skip
    assert "lastBasketTotal=" in table.stdout


def test_preview_of_a_debezium_topic_skips_deletes_and_tombstones(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic(partitions=1, prefix="crm-customers")
    dump = tmp_path / "dump.jsonl"
    produced = cli(
        "produce-sample", "--no-progress", "--bootstrap-servers", kafka_bootstrap,
        "--count", "0", "--customer-changes", "300", "--topic-customers", topic,
        "--profiles", "20", "--seed", "3", "--start-ms", str(START_MS), "--dump", str(dump),
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    records = read_dump(dump)
    mapping = mapping_for(tmp_path, "crm_customers.mapping.yaml", "crm.public.customers", topic)

    rows = preview(mapping, kafka_bootstrap, topic, 300)

    assert len(rows) == len(records) == 300
    outcomes: dict[str, int] = {}
    for row, record in zip(rows, records, strict=True):  # one partition: production order
        outcomes[row.get("reason", row["outcome"])] = outcomes.get(row.get("reason", ""), 0) + 1
        if record["expect"] is None:
            assert row["outcome"] == "skip" and row["reason"] in ("deleted", "tombstone"), row
        else:
            assert row["attributes"] == record["expect"]
            assert row["occurred_at"] == record["occurred_at"]
    assert {"deleted", "tombstone", "update"} <= set(outcomes)


def _wire(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def test_schema_evolution_through_the_registry(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    produce_raw: Callable[..., Any],
    schema_registry: Any,
    tmp_path: Path,
) -> None:
    topic = make_topic(partitions=1, prefix="pos-evolving")
    v1 = json.loads((EXAMPLES / "pos_purchase.avsc").read_text("utf-8"))
    with_field = json.loads(json.dumps(v1))
    with_field["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
    without_currency = json.loads(json.dumps(with_field))
    without_currency["fields"] = [f for f in with_field["fields"] if f["name"] != "currency"]
    without_id = json.loads(json.dumps(without_currency))
    without_id["fields"] = [f for f in without_currency["fields"] if f["name"] != "customer"]
    purchase: dict[str, Any] = {
        "purchase_id": "R-1",
        "customer": {"number": "crm-000001", "email": None},
        "store": {"id": "store-0001", "region": "North"},
        "purchased_at": START_MS,
        "basket_total": Decimal("19.99"),
        "currency": "EUR",
        "payment": None,
        "points_earned": None,
        "items": [],
        "channel": "app",
    }
    subject = f"{topic}-value"
    records = []
    for schema in (v1, with_field, without_currency, without_id):
        schema_id = schema_registry.register(subject, json.dumps(schema))
        names = {f["name"] for f in schema["fields"]}
        value = {k: v for k, v in purchase.items() if k in names}
        records.append((b"crm-000001", _wire(schema_id, schema, value)))
    produce_raw(topic, records)
    mapping = mapping_for(tmp_path, "pos_purchase.mapping.yaml", "pos.purchases", topic)

    rows = preview(mapping, kafka_bootstrap, topic, 4, "--schema-registry-url", schema_registry.url)

    v1_row, new_field, removed_attribute, removed_id = rows
    assert v1_row["attributes"]["lastBasketTotal"] == "19.99"
    assert new_field["attributes"] == v1_row["attributes"]  # a new optional field changes nothing
    assert "lastBasketCurrency" not in removed_attribute["attributes"]  # just absent
    assert removed_attribute["attributes"]["lastBasketTotal"] == "19.99"
    assert removed_id["outcome"] == "dead_letter"
    assert removed_id["reason"] == "mapping_failed"
    assert "customer.number" in removed_id["detail"]

    latest = cli(
        "mapping", "check", "--mapping-file", str(mapping),
        "--schema-registry-url", schema_registry.url,
    )  # fmt: skip
    assert latest.returncode == 2
    assert f"{topic} / profile.id / customer.number: no field 'customer'" in latest.stderr
    every = cli(
        "mapping", "check", "--mapping-file", str(mapping),
        "--schema-registry-url", schema_registry.url, "--all-versions",
    )  # fmt: skip
    assert every.returncode == 2
    assert f"{subject} v4" in every.stderr
    assert f"{topic} / lastBasketCurrency / currency" in every.stderr  # v3 removed it
