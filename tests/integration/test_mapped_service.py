"""``profile-sync run`` reading users' own records through a mapping file (docs/mapping.md).

The real service against the real broker and the emulator over HTTP. Expected values are
written out by hand from the records (the documented rendering), never by the engine.
"""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from sampler.mapped import CUSTOMERS_SCHEMA, PURCHASE_SCHEMA, mapping_file_text
from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import wait_for

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000


def plain(schema_path: Path, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schema = fastavro.parse_schema(json.loads(schema_path.read_text("utf-8")))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def wire(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def write_mapping(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "mapping.yaml"
    file.write_text(text, encoding="utf-8")
    return file


def headers(message: Any) -> dict[str, str]:
    return {k: v.decode("utf-8") for k, v in message.headers() or []}


# --- Debezium: one customer's whole life cycle ---------------------------------------------


def customer_row(at_ms: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 42,
        "customer_number": "crm-000042",
        "first_name": "Ana",
        "email": "Ana.Silva@Example.COM",
        "city": "Porto",
        "loyalty_tier": "SILVER",
        "email_opt_in": True,
        "birth_date": 7_000,  # 1989-03-02
        "credit_limit": Decimal("1500.00"),
        "updated_at": at_ms * 1000 + 123,
    }
    row.update(values)
    return row


def envelope(op: str, before: Any, after: Any, at_ms: int) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final",
            "connector": "postgresql",
            "name": "crm",
            "ts_ms": at_ms,
            "snapshot": "true" if op == "r" else None,
            "db": "crm",
            "schema": "public",
            "table": "customers",
            "lsn": None,
        },
        "op": op,
        "ts_ms": at_ms + 5,
    }


def test_debezium_life_cycle_of_one_customer_ends_with_the_last_after_image(
    stack: Callable[..., Stack],
    make_topic: Callable[..., str],
    produce_raw: Callable[..., Any],
    tmp_path: Path,
) -> None:
    s = stack(topics=0)
    topic = make_topic(partitions=1, prefix="crm-customers")
    s.topics.append(topic)
    mapping = write_mapping(tmp_path, mapping_file_text([], customers_topic=topic))
    t = START_MS
    snapshot = customer_row(t)
    updated = customer_row(t + 1000, city="Lisboa", loyalty_tier="GOLD")
    recreated = customer_row(t + 3000, first_name="Ana Maria", email=None, credit_limit=None)
    last = customer_row(
        t + 4000,
        first_name="Ana Maria",
        email="ANA@example.org",
        city="Braga",
        loyalty_tier="PLATINUM",
        email_opt_in=False,
        birth_date=-365,  # 1969-01-01
        credit_limit=Decimal("0.10"),
    )
    changes: list[dict[str, Any] | None] = [
        envelope("r", None, snapshot, t),
        envelope("u", snapshot, updated, t + 1000),
        envelope("d", updated, None, t + 2000),
        None,  # the tombstone
        envelope("c", None, recreated, t + 3000),
        envelope("u", None, last, t + 4000),  # no before image (REPLICA IDENTITY DEFAULT)
        envelope("d", last, None, t + 5000),
        None,
    ]
    produce_raw(
        topic,
        [(b"crm-000042", None if c is None else plain(CUSTOMERS_SCHEMA, c)) for c in changes],
    )

    service = s.start("--exit-when-idle", "2", "--summary", PROFILE_SYNC_MAPPING_FILE=str(mapping))
    s.wait_for_state(
        {
            ("thirdPartyId", "crm-000042"): {
                "crmFirstName": "Ana Maria",
                "crmEmail": "ana@example.org",
                "crmCity": "Braga",
                "crmLoyaltyTier": "PLATINUM",
                "crmEmailOptIn": "false",
                "crmBirthDate": "1969-01-01",
                "crmCreditLimit": "0.10",
            }
        }
    )
    skips = {
        reason: service.metric("profile_sync_mapping_skipped_total", reason=reason)
        for reason in ("deleted", "tombstone")
    }
    assert service.wait(60) == 0, service.log_tail()
    assert skips == {"deleted": 2.0, "tombstone": 2.0}
    summary = service.summary()
    assert summary["dead_letters"] == 0
    assert summary["events_consumed"] == len(changes)
    wait_for(s.all_committed, 20, "every offset committed, deletes and tombstones included")


# --- POS purchases beside the contract -----------------------------------------------------


def purchase(
    number: str, at: int, total: str, items: list[tuple[str, int, str]], **kw: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "purchase_id": f"R-{number}-{at}",
        "customer": {"number": number, "email": None},
        "store": {"id": "store-0007", "region": "Île-de-France"},
        "purchased_at": at,
        "basket_total": Decimal(total),
        "currency": "EUR",
        "payment": None,
        "points_earned": None,
        "items": [
            {"sku": f"SKU-{i}", "category": c, "quantity": q, "unit_price": Decimal(p)}
            for i, (c, q, p) in enumerate(items)
        ],
    }
    record.update(kw)
    return record


def test_pos_purchases_are_rendered_exactly_beside_the_contract(
    stack: Callable[..., Stack],
    make_topic: Callable[..., str],
    produce_raw: Callable[..., Any],
    tmp_path: Path,
) -> None:
    s = stack(partitions=2, topics=1)
    purchases = make_topic(partitions=2, prefix="pos-purchases")
    contract_topic = s.topics[0]
    s.topics.append(purchases)
    mapping = write_mapping(tmp_path, mapping_file_text([contract_topic], purchases))
    t = START_MS + 10 * DAY_MS + 3_600_000
    records = [
        # 0.1 + 0.2 style sums and a three-decimal-digit total: exact, no float artefacts.
        purchase("crm-000001", t, "19.99", [("Grocery", 3, "3.33"), ("Bakery", 1, "9.99")],
                 payment={"brand": "visa", "last4": "4242"}, points_earned=19),
        purchase("crm-000002", t + 1, "0.30", [("Snacks", 1, "0.10"), ("Snacks", 2, "0.10")],
                 payment="cash"),
        purchase("crm-000003", t + 2, "-12.50", [], payment=None, points_earned=0),
        purchase("crm-000003", t + 3, "1000.00", [("Electronics", 1, "1000.00")],
                 store={"id": "store-0001", "region": "TRAINING"}),  # filtered
        purchase("crm-000004", t + 4, "1234567.89", [("Home", 12, "102880.66")],
                 payment={"brand": "amex", "last4": "0005"}),
    ]  # fmt: skip
    produce_raw(
        purchases, [(r["customer"]["number"].encode(), plain(PURCHASE_SCHEMA, r)) for r in records]
    )
    contract = [
        event("crm-000001", {"loyaltyTier": "gold", "points": 120}, t - 5),
        event("crm-000005", {"city": "Zürich"}, t),
    ]
    s.produce(contract)
    expected = s.expected(contract)
    day = "2026-01-11"
    expected[("thirdPartyId", "crm-000001")].update(
        lastBasketTotal="19.99", lastBasketCurrency="EUR", lastPurchaseStore="store-0007",
        lastPurchaseRegion="île-de-france", lastPurchaseDate=day, lastBasketItems="2",
        lastBasketUnits="4", lastBasketCategories="grocery|bakery", lastPaymentBrand="VISA",
        lastPointsEarned="19",
    )  # fmt: skip
    expected[("thirdPartyId", "crm-000002")] = dict(
        lastBasketTotal="0.30", lastBasketCurrency="EUR", lastPurchaseStore="store-0007",
        lastPurchaseRegion="île-de-france", lastPurchaseDate=day, lastBasketItems="2",
        lastBasketUnits="3", lastBasketCategories="snacks|snacks", lastPaymentBrand="OTHER",
    )  # fmt: skip
    expected[("thirdPartyId", "crm-000003")] = dict(
        lastBasketTotal="-12.50", lastBasketCurrency="EUR", lastPurchaseStore="store-0007",
        lastPurchaseRegion="île-de-france", lastPurchaseDate=day, lastBasketItems="0",
        lastBasketUnits="0", lastPaymentBrand="OTHER", lastPointsEarned="0",
    )  # fmt: skip
    expected[("thirdPartyId", "crm-000004")] = dict(
        lastBasketTotal="1234567.89", lastBasketCurrency="EUR", lastPurchaseStore="store-0007",
        lastPurchaseRegion="île-de-france", lastPurchaseDate=day, lastBasketItems="1",
        lastBasketUnits="12", lastBasketCategories="home", lastPaymentBrand="AMEX",
    )  # fmt: skip

    service = s.start("--exit-when-idle", "2", "--summary", PROFILE_SYNC_MAPPING_FILE=str(mapping))
    s.wait_for_state(expected)
    filtered = service.metric("profile_sync_mapping_skipped_total", reason="filtered")
    assert service.wait(60) == 0, service.log_tail()
    assert filtered == 1.0
    assert service.summary()["dead_letters"] == 0
    wait_for(s.all_committed, 20, "every offset committed, the filtered one included")


# --- schema evolution through the Schema Registry ------------------------------------------


def test_schema_evolution_new_field_removed_attribute_removed_id(
    stack: Callable[..., Stack],
    make_topic: Callable[..., str],
    produce_raw: Callable[..., Any],
    schema_registry: Any,
    tmp_path: Path,
) -> None:
    s = stack(topics=0)
    topic = make_topic(partitions=1, prefix="pos-evolving")
    s.topics.append(topic)
    mapping = write_mapping(tmp_path, mapping_file_text([], topic))
    subject = f"{topic}-value"
    v1 = json.loads(PURCHASE_SCHEMA.read_text("utf-8"))
    v2 = json.loads(json.dumps(v1))  # a new optional field
    v2["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
    v3 = json.loads(json.dumps(v2))  # a mapped attribute removed
    v3["fields"] = [f for f in v2["fields"] if f["name"] != "currency"]
    v4 = json.loads(json.dumps(v3))  # the profile id removed
    v4["fields"] = [f for f in v3["fields"] if f["name"] != "customer"]
    t = START_MS
    base = purchase("crm-000009", t, "10.00", [("Books", 1, "10.00")])

    def send(schema: dict[str, Any], **changes: Any) -> None:
        schema_id = schema_registry.register(subject, json.dumps(schema))
        names = {f["name"] for f in schema["fields"]}
        record = {k: v for k, v in {**base, **changes}.items() if k in names}
        produce_raw(topic, [(b"crm-000009", wire(schema_id, schema, record))])

    send(v1)
    service = s.start(
        PROFILE_SYNC_MAPPING_FILE=str(mapping),
        PROFILE_SYNC_SCHEMA_REGISTRY_URL=schema_registry.url,
    )
    first = {
        "lastBasketTotal": "10.00",
        "lastBasketCurrency": "EUR",
        "lastPurchaseStore": "store-0007",
        "lastPurchaseRegion": "île-de-france",
        "lastPurchaseDate": "2026-01-01",
        "lastBasketItems": "1",
        "lastBasketUnits": "1",
        "lastBasketCategories": "books",
        "lastPaymentBrand": "OTHER",
    }
    key = ("thirdPartyId", "crm-000009")
    s.wait_for_state({key: first})

    send(v2, purchased_at=t + 1, basket_total=Decimal("20.50"), currency="CHF", channel="app")
    second = {**first, "lastBasketTotal": "20.50", "lastBasketCurrency": "CHF"}
    s.wait_for_state({key: second})  # the new field changes nothing else

    send(v3, purchased_at=t + 2, basket_total=Decimal("30.25"))
    third = {**second, "lastBasketTotal": "30.25"}  # the removed currency is just absent
    s.wait_for_state({key: third})

    send(v4, purchased_at=t + 3, basket_total=Decimal("99.99"))
    (letter,) = s.dead_letters(1)
    found = headers(letter)
    assert found["profile-sync.reason"] == "mapping_failed"
    assert found["profile-sync.mapping.path"] == "customer.number"
    assert "customer.number" in found["profile-sync.error.message"]
    assert found["profile-sync.source.topic"] == topic
    assert s.target_state() == {key: third}
    wait_for(
        lambda: (
            service.metric(
                "profile_sync_poison_events_total", stage="validate", reason="mapping_failed"
            )
            == 1.0
        ),
        10,
        "the mapping failure counted",
    )
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0, service.log_tail()
    wait_for(s.all_committed, 20, "the dead-lettered offset committed too")

    # Now the latest registered schema lacks the id: the service refuses to start.
    refused = s.start(
        PROFILE_SYNC_MAPPING_FILE=str(mapping),
        PROFILE_SYNC_SCHEMA_REGISTRY_URL=schema_registry.url,
    )
    assert refused.wait(30) == 2
    assert f"{topic} / profile.id / customer.number" in refused.log_tail()


# --- a bad mapping file --------------------------------------------------------------------


def test_a_bad_mapping_file_fails_check_and_run_exits_2_naming_each_error(
    stack: Callable[..., Stack], make_topic: Callable[..., str], tmp_path: Path
) -> None:
    s = stack(topics=0)
    topic = make_topic(partitions=1, prefix="pos-bad")
    s.topics.append(topic)
    text = mapping_file_text([], topic)
    text = text.replace("lastPurchaseStore: store.id", "lastPurchaseStore: store.idd")
    text = text.replace(
        "path: basket_total\n      transform: decimal\n      scale: 2",
        "path: basket_total\n      transform: number",
    )
    unfit = write_mapping(tmp_path, text)
    duplicate = tmp_path / "duplicate.yaml"
    duplicate.write_text(
        text.replace("lastPointsEarned: points_earned", "profile.lastBasketCurrency: currency"),
        encoding="utf-8",
    )
    unknown_path = f"{topic} / lastPurchaseStore / store.idd: no field 'idd'"
    wrong_type = f"{topic} / lastBasketTotal / basket_total: a bytes (decimal)"
    twice = f"{topic} / profile.lastBasketCurrency: duplicate Target name 'lastBasketCurrency'"
    from tests.integration.test_mapping_commands import cli

    checked = cli("mapping", "check", "--mapping-file", str(unfit))
    assert checked.returncode == 2
    assert unknown_path in checked.stderr and wrong_type in checked.stderr
    checked = cli("mapping", "check", "--mapping-file", str(duplicate))
    assert checked.returncode == 2
    assert twice in checked.stderr

    for file, named in ((unfit, (unknown_path, wrong_type)), (duplicate, (twice,))):
        service = s.start(PROFILE_SYNC_MAPPING_FILE=str(file))
        assert service.wait(30) == 2
        log = service.log_tail(80)
        for problem in named:
            assert problem in log, log
