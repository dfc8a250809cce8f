"""The mapping engine: a user's own Avro record -> the ProfileUpdate the service sends.

Records go through real Avro bytes and the service's decoder, so decimals arrive as the
bytes they are on the wire and unions as their branch, exactly as in production.
"""

from __future__ import annotations

import io
import json
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer.core.decode import Decoder
from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.errors import DecodeError, MappingFailed, MappingSpecError, ValidationError
from consumer.mapping import Mappings, Skip, SkipReason, load_file, parse_text

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
TP = TopicPartition("pos.purchases", 2)
MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text("utf-8"))
    return loaded


def roundtrip(schema_name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Encode with the logical types (as producers do), decode as the service does."""
    writer = schema(schema_name)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), record)
    return Decoder(None, writer_schema=writer).decode(buf.getvalue())


def mapping(text: str, base: Path = EXAMPLES) -> Mappings:
    return parse_text(textwrap.dedent(text), base)


def apply(m: Mappings, topic: str, record: Any, timestamp: int | None = None) -> Any:
    entry = m.for_topic(topic)
    assert entry is not None
    return entry.apply(record, TopicPartition(topic, 2), 41, timestamp)


def purchase(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "purchase_id": "R-0001",
        "customer": {"number": "6280000000042", "email": None},
        "store": {"id": "store-0007", "region": "North-West"},
        "purchased_at": MS + 90_061_001,
        "basket_total": Decimal("19.99"),
        "currency": "EUR",
        "payment": {"brand": "visa", "last4": "4242"},
        "points_earned": 19,
        "items": [
            {"sku": "A1", "category": "Grocery", "quantity": 2, "unit_price": Decimal("0.10")},
            {
                "sku": "B2",
                "category": "Home & Garden",
                "quantity": 1,
                "unit_price": Decimal("19.79"),
            },
        ],
    }
    base.update(over)
    return base


POS = load_file(EXAMPLES / "pos_purchase.mapping.yaml")
CRM = load_file(EXAMPLES / "crm_customers.mapping.yaml")
LOYALTY = load_file(EXAMPLES / "loyalty_tier_changed.mapping.yaml")


# --- POS: decimals, arrays, unions --------------------------------------------------------


def test_pos_purchase_renders_every_attribute_exactly_as_documented() -> None:
    update = apply(POS, "pos.purchases", roundtrip("pos_purchase.avsc", purchase()))
    assert update == ProfileUpdate(
        IdType.THIRD_PARTY_ID,
        "6280000000042",
        {
            "lastBasketTotal": "19.99",
            "lastBasketCurrency": "EUR",
            "lastPurchaseStore": "store-0007",
            "lastPurchaseRegion": "north-west",
            "lastPurchaseDate": "2026-01-02",
            "lastBasketItems": "2",
            "lastBasketUnits": "3",
            "lastBasketCategories": "grocery|home & garden",
            "lastPaymentBrand": "VISA",
            "lastPointsEarned": "19",
        },
        Priority.NORMAL,
        MS + 90_061_001,
        TopicPartition("pos.purchases", 2),
        41,
        "POS",
        "R-0001",
    )


@pytest.mark.parametrize(
    ("total", "shown"),
    [
        (Decimal("19.99"), "19.99"),
        (Decimal("0.10"), "0.10"),  # the scale is kept: a price, not a float
        (Decimal("-5.00"), "-5.00"),  # a refund
        (Decimal("9999999999.99"), "9999999999.99"),  # beyond a double's exact range
        (Decimal("0.01"), "0.01"),
    ],
)
def test_decimal_amounts_have_no_float_artefacts(total: Decimal, shown: str) -> None:
    update = apply(
        POS, "pos.purchases", roundtrip("pos_purchase.avsc", purchase(basket_total=total))
    )
    assert update.attributes["lastBasketTotal"] == shown


def test_sum_of_decimal_line_items_is_exact() -> None:
    m = mapping(
        """
        mappings:
          - topic: pos.purchases
            profile: {id: customer.number}
            occurred_at: purchased_at
            attributes:
              itemsValue: {path: items, transform: sum, item: unit_price, scale: 2}
              firstSku: items.0.sku
              skus: {path: items, transform: join, item: sku}
        """
    )
    items = [
        {"sku": f"S{i}", "category": "c", "quantity": 1, "unit_price": Decimal("0.10")}
        for i in range(3)
    ]
    update = apply(m, "pos.purchases", roundtrip("pos_purchase.avsc", purchase(items=items)))
    # 0.1 + 0.1 + 0.1 in floats is 0.30000000000000004
    assert update.attributes == {"itemsValue": "0.30", "firstSku": "S0", "skus": "S0,S1,S2"}


def test_union_branches_map_to_present_or_absent_or_default() -> None:
    cash = apply(POS, "pos.purchases", roundtrip("pos_purchase.avsc", purchase(payment="cash")))
    unknown = apply(POS, "pos.purchases", roundtrip("pos_purchase.avsc", purchase(payment=None)))
    # a string branch has no .brand and a null has nothing: the default fills in
    assert cash.attributes["lastPaymentBrand"] == "OTHER"
    assert unknown.attributes["lastPaymentBrand"] == "OTHER"
    no_points = apply(
        POS, "pos.purchases", roundtrip("pos_purchase.avsc", purchase(points_earned=None))
    )
    assert "lastPointsEarned" not in no_points.attributes  # null: no change


def test_empty_basket_counts_zero_and_joins_to_nothing() -> None:
    update = apply(POS, "pos.purchases", roundtrip("pos_purchase.avsc", purchase(items=[])))
    assert update.attributes["lastBasketItems"] == "0"
    assert update.attributes["lastBasketUnits"] == "0"
    assert "lastBasketCategories" not in update.attributes


def test_urgent_condition_on_a_decimal_threshold() -> None:
    small = apply(POS, "pos.purchases", roundtrip("pos_purchase.avsc", purchase()))
    large = apply(
        POS,
        "pos.purchases",
        roundtrip("pos_purchase.avsc", purchase(basket_total=Decimal("1000.00"))),
    )
    assert (small.priority, large.priority) == (Priority.NORMAL, Priority.URGENT)


def test_filter_skips_the_record_without_poisoning_it() -> None:
    training = purchase(store={"id": "store-9999", "region": "TRAINING"})
    outcome = apply(POS, "pos.purchases", roundtrip("pos_purchase.avsc", training))
    assert outcome == Skip(SkipReason.FILTERED)


def test_missing_id_is_mapping_failed_naming_the_path() -> None:
    record = roundtrip("pos_purchase.avsc", purchase())
    del record["customer"]  # what an evolved writer schema without the field decodes to
    with pytest.raises(MappingFailed) as caught:
        apply(POS, "pos.purchases", record)
    assert caught.value.reason == "mapping_failed"
    assert caught.value.path == "customer.number"
    assert "customer.number" in str(caught.value)


def test_missing_optional_attribute_is_just_absent() -> None:
    record = roundtrip("pos_purchase.avsc", purchase())
    del record["currency"]  # removed from the writer schema
    update = apply(POS, "pos.purchases", record)
    assert "lastBasketCurrency" not in update.attributes
    assert update.attributes["lastBasketTotal"] == "19.99"


def test_a_type_that_no_longer_fits_is_mapping_failed_with_path_and_attribute() -> None:
    record = roundtrip("pos_purchase.avsc", purchase())
    record["items"] = "A1,B2"  # an evolved schema turned the array into a string
    with pytest.raises(MappingFailed) as caught:
        apply(POS, "pos.purchases", record)
    assert caught.value.path == "items"
    assert "lastBasketItems" in caught.value.detail


# --- Debezium: c/u/r/d, tombstones, changed() ---------------------------------------------


def row(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 42,
        "customer_number": "crm-000042",
        "first_name": "Zoë",
        "email": "Zoe@Example.COM",
        "city": "Zürich",
        "loyalty_tier": "silver",
        "email_opt_in": True,
        "birth_date": 7_000,  # days: 1989-03-02
        "credit_limit": Decimal("2500.50"),
        "updated_at": (MS + 5_000) * 1000 + 123,  # micros
    }
    base.update(over)
    return base


def envelope(op: str, before: Any, after: Any, table: str = "customers") -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.0.Final",
            "connector": "postgresql",
            "name": "crm",
            "ts_ms": MS,
            "snapshot": "true" if op == "r" else None,
            "db": "crm",
            "schema": "public",
            "table": table,
            "lsn": 1234,
        },
        "op": op,
        "ts_ms": MS + 9_000,
    }


def cdc(op: str, before: Any, after: Any, **kw: Any) -> Any:
    value = roundtrip("crm_customers_debezium.avsc", envelope(op, before, after, **kw))
    return apply(CRM, "crm.public.customers", value)


@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_debezium_upserts_map_the_after_image(op: str) -> None:
    before = row(city="Paris") if op == "u" else None
    update = cdc(op, before, row())
    assert update.profile_id == "crm-000042"
    assert update.attributes == {
        "crmFirstName": "Zoë",
        "crmEmail": "zoe@example.com",
        "crmCity": "Zürich",
        "crmLoyaltyTier": "silver",
        "crmEmailOptIn": "true",
        "crmBirthDate": "1989-03-02",
        "crmCreditLimit": "2500.50",
    }
    assert update.occurred_at == MS + 5_000  # micros -> millis
    assert update.source == "CRM"


def test_debezium_update_never_reads_the_before_image() -> None:
    update = cdc("u", row(city="Paris", email=None), row(city=None, email="new@example.com"))
    assert "crmCity" not in update.attributes  # null after = no change, not "Paris"
    assert update.attributes["crmEmail"] == "new@example.com"


def test_debezium_delete_and_tombstone_are_skips() -> None:
    assert cdc("d", row(), None) == Skip(SkipReason.DELETED)
    entry = CRM.for_topic("crm.public.customers")
    assert entry is not None
    assert entry.apply(None, TP, 1, None) == Skip(SkipReason.TOMBSTONE)


def test_a_tombstone_on_a_plain_topic_is_still_poison() -> None:
    entry = POS.for_topic("pos.purchases")
    assert entry is not None
    with pytest.raises(DecodeError):
        entry.apply(None, TP, 1, None)


def test_debezium_changed_condition_makes_tier_changes_urgent() -> None:
    same = cdc("u", row(city="Paris"), row())
    changed = cdc("u", row(loyalty_tier="bronze"), row())
    created = cdc("c", None, row())
    snapshot = cdc("r", None, row())
    assert same.priority is Priority.NORMAL
    assert changed.priority is Priority.URGENT
    # the example asks for op u too: creates and snapshot reads would otherwise all be
    # urgent, since without a before image a tier that is there counts as changed
    assert created.priority is Priority.NORMAL
    assert snapshot.priority is Priority.NORMAL
    no_before = cdc("u", None, row())
    assert no_before.priority is Priority.URGENT


def test_debezium_filter_on_the_envelope_source() -> None:
    assert cdc("u", None, row(), table="customers_archive") == Skip(SkipReason.FILTERED)


def test_debezium_ts_ms_and_kafka_timestamp_units() -> None:
    m = mapping(
        """
        mappings:
          - topic: crm.public.customers
            envelope: debezium
            profile: {id: customer_number}
            occurred_at: {unit: debezium}
            attributes: {crmCity: city}
          - topic: pos.purchases
            profile: {id: customer.number}
            occurred_at: {unit: kafka}
            attributes: {store: store.id}
        """
    )
    value = roundtrip("crm_customers_debezium.avsc", envelope("u", None, row()))
    assert apply(m, "crm.public.customers", value).occurred_at == MS + 9_000
    pos = roundtrip("pos_purchase.avsc", purchase())
    assert apply(m, "pos.purchases", pos, timestamp=MS + 1).occurred_at == MS + 1
    with pytest.raises(MappingFailed) as caught:
        apply(m, "pos.purchases", pos, timestamp=-1)
    assert caught.value.path == "@timestamp"


# --- ids: fixed type, type from a field, prefix and format -------------------------------


def tier_changed(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "member_id": "6280000000042",
        "id_kind": "CARD",
        "old_tier": "SILVER",
        "new_tier": "GOLD",
        "points_balance": 12_500,
        "changed_at": (MS + 1) * 1000,
        "reason": None,
    }
    base.update(over)
    return base


def test_id_type_from_a_field_through_the_value_table() -> None:
    card = roundtrip("loyalty_tier_changed.avsc", tier_changed())
    visitor = roundtrip(
        "loyalty_tier_changed.avsc",
        tier_changed(id_kind="VISITOR", member_id="7d8f0c41a2b54e36b9f1c2d3e4f5a6b7.35_0"),
    )
    a = apply(LOYALTY, "loyalty.tier-changed", card)
    b = apply(LOYALTY, "loyalty.tier-changed.v2", visitor)
    assert (a.id_type, b.id_type) == (IdType.THIRD_PARTY_ID, IdType.PC_ID)
    assert a.attributes == {
        "loyaltyTier": "gold",
        "loyaltyPoints": "12500",
        "loyaltyTierChangedAt": "2026-01-01T00:00:00Z",
    }
    assert a.priority is Priority.URGENT  # silver -> gold


def test_urgent_all_condition_does_not_fire_within_the_top_tiers() -> None:
    record = roundtrip("loyalty_tier_changed.avsc", tier_changed(old_tier="PLATINUM"))
    assert apply(LOYALTY, "loyalty.tier-changed", record).priority is Priority.NORMAL


def test_unmapped_topic_has_no_entry() -> None:
    assert LOYALTY.for_topic("loyalty.tier-changed-archive") is None


def test_numeric_id_with_prefix_and_format() -> None:
    m = mapping(
        """
        mappings:
          - topic: crm.public.customers
            envelope: debezium
            profile: {id: id, prefix: "crm-", format: "{:06d}"}
            occurred_at: {unit: debezium}
            attributes: {crmCity: city}
        """
    )
    value = roundtrip("crm_customers_debezium.avsc", envelope("c", None, row(id=42)))
    assert apply(m, "crm.public.customers", value).profile_id == "crm-000042"


# --- each transform on its own -----------------------------------------------------------


def one(transform: dict[str, Any], value: Any) -> Any:
    spec = json.dumps({"path": "v", **transform})
    m = mapping(
        f"""
        mappings:
          - topic: t
            profile: {{id: id}}
            occurred_at: at
            attributes: {{a: {spec}}}
        """
    )
    outcome = apply(m, "t", {"id": "p1", "at": 1, "v": value})
    return outcome.attributes.get("a") if isinstance(outcome, ProfileUpdate) else outcome


@pytest.mark.parametrize(
    ("transform", "value", "shown"),
    [
        ({}, "José & Zoë, 100%", "José & Zoë, 100%"),
        ({}, 0.1, "0.1"),  # doubles: shortest round-trip form, as the contract renders them
        ({}, 12.0, "12.0"),
        ({}, 1e16, "1e+16"),
        ({}, True, "true"),
        ({}, -7, "-7"),
        ({"transform": "number"}, 19.99, "19.99"),
        ({"transform": "number", "places": 2}, 19.989999999999998, "19.99"),
        ({"transform": "number", "places": 2}, 2.675, "2.68"),  # exact half-even of 2.675
        ({"transform": "number", "places": 0}, 7, "7"),
        ({"transform": "decimal", "scale": 2}, (1999).to_bytes(2, "big", signed=True), "19.99"),
        ({"transform": "decimal", "scale": 7}, (1).to_bytes(1, "big"), "0.0000001"),
        ({"transform": "decimal", "scale": 2, "places": 1}, (1995).to_bytes(2, "big"), "20.0"),
        ({"transform": "decimal"}, "0012.50", "12.50"),
        ({"transform": "boolean"}, "Y", "true"),
        ({"transform": "boolean"}, 0, "false"),
        ({"transform": "boolean"}, False, "false"),
        ({"transform": "date"}, MS, "2026-01-01"),
        ({"transform": "date", "unit": "days"}, 0, "1970-01-01"),
        (
            {"transform": "date", "unit": "seconds", "format": "datetime"},
            60,
            "1970-01-01T00:01:00Z",
        ),
        ({"transform": "lower"}, "ÉTÉ", "été"),
        ({"transform": "upper"}, "gold", "GOLD"),
        ({"transform": "join"}, ["a", None, "", 3, True], "a,3,true"),
        ({"transform": "join", "separator": " / "}, ["x", "y"], "x / y"),
        ({"transform": "count"}, [1, 2, 3], "3"),
        ({"transform": "count"}, {"k": 1}, "1"),
        ({"transform": "sum"}, [0.1, 0.2], "0.3"),  # floats summed exactly, not 0.30000000000000004
        ({"transform": "sum"}, [1, 2, 3], "6"),
        ({"transform": "sum", "places": 2}, [1, 2.5], "3.50"),
        ({"default": "unknown"}, None, "unknown"),
        ({"default": "unknown"}, "", "unknown"),
        ({"transform": "lower", "default": "n/a"}, None, "n/a"),
    ],
)
def test_transform_renders(transform: dict[str, Any], value: Any, shown: str | None) -> None:
    assert one(transform, value) == shown


def test_constant_attribute_needs_no_field() -> None:
    m = mapping(
        """
        mappings:
          - topic: t
            profile: {id: id}
            occurred_at: at
            attributes:
              syncedBy: {transform: constant, value: profile-sync}
              hasCard: {transform: constant, value: true}
        """
    )
    update = apply(m, "t", {"id": "p1", "at": 5})
    assert update.attributes == {"syncedBy": "profile-sync", "hasCard": "true"}


@pytest.mark.parametrize(
    ("transform", "value"),
    [
        ({"transform": "boolean"}, "maybe"),
        ({"transform": "number"}, "12"),
        ({"transform": "decimal"}, b"\x07"),  # bytes without a scale
        ({"transform": "date"}, "2026-01-01"),
        ({"transform": "join"}, "a,b"),
        ({"transform": "count"}, 3),
        ({}, b"\x00\x01"),
        ({}, float("nan")),
    ],
)
def test_a_value_that_does_not_fit_its_transform_is_mapping_failed(
    transform: dict[str, Any], value: Any
) -> None:
    with pytest.raises(MappingFailed) as caught:
        one(transform, value)
    assert caught.value.path == "v"


def test_a_record_with_nothing_to_change_is_a_skip() -> None:
    assert one({}, None) == Skip(SkipReason.NO_CHANGE)
    assert one({}, "") == Skip(SkipReason.NO_CHANGE)  # an empty string changes nothing


def test_profile_limits_of_the_contract_still_apply() -> None:
    with pytest.raises(ValidationError) as caught:
        one({}, "x" * 70_000)
    assert caught.value.reason == "profile_too_large"
    m = mapping(
        """
        mappings:
          - topic: t
            profile: {id: id}
            occurred_at: at
            attributes: {a: v}
        """
    )
    with pytest.raises(ValidationError) as bad_id:
        apply(m, "t", {"id": "  ", "at": 1, "v": "x"})
    assert bad_id.value.reason == "invalid_profile_id"
    with pytest.raises(ValidationError) as bad_time:
        apply(m, "t", {"id": "p", "at": -1, "v": "x"})
    assert bad_time.value.reason == "invalid_occurred_at"
    # Target's id rules (issue 11): no + or / in a thirdPartyId, at most 256 characters.
    for pid in ("a+b", "a/b"):
        with pytest.raises(ValidationError) as refused:
            apply(m, "t", {"id": pid, "at": 1, "v": "x"})
        assert refused.value.reason == "third_party_id_forbidden_character"
    with pytest.raises(ValidationError) as too_long:
        apply(m, "t", {"id": "x" * 257, "at": 1, "v": "x"})
    assert too_long.value.reason == "profile_id_too_long"


# --- conditions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "value", "skipped"),
    [
        ({"path": "v", "equals": "x"}, "x", True),
        ({"path": "v", "equals": "x"}, None, False),
        ({"path": "v", "not_equals": "x"}, "y", True),
        ({"path": "v", "in": ["a", "b"]}, "b", True),
        ({"path": "v", "not_in": ["a", "b"]}, "c", True),
        ({"path": "v", "exists": False}, None, True),
        ({"path": "v", "exists": True}, None, False),
        ({"path": "v", "gt": 10}, 11, True),
        ({"path": "v", "gte": 10}, 10, True),
        ({"path": "v", "lt": 0.5}, 0.4, True),
        ({"path": "v", "lte": 1}, "not a number", False),
        ({"not": {"path": "v", "equals": "x"}}, "x", False),
        ({"any": [{"path": "v", "equals": 1}, {"path": "v", "equals": 2}]}, 2, True),
        ({"all": [{"path": "v", "gt": 1}, {"path": "v", "lt": 3}]}, 3, False),
    ],
)
def test_skip_when_conditions(condition: dict[str, Any], value: Any, skipped: bool) -> None:
    m = mapping(
        f"""
        mappings:
          - topic: t
            profile: {{id: id}}
            occurred_at: at
            skip_when: {json.dumps(condition)}
            attributes: {{a: w}}
        """
    )
    outcome = apply(m, "t", {"id": "p", "at": 1, "v": value, "w": "x"})
    assert (outcome == Skip(SkipReason.FILTERED)) is skipped


# --- the file itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where", "why"),
    [
        ("attributes: {a: v, profile.a: w}", "t / profile.a", "duplicate Target name"),
        ("attributes: {a: {path: v, transform: squash}}", "t / a / transform", "unknown transform"),
        ("attributes: {a: {path: v, transform: date, unit: weeks}}", "t / a / transform", "unit"),
        ("attributes: {a: {path: v, transform: count, places: 2}}", "t / a / transform", "places"),
        ("attributes: {a: {path: 'v..w'}}", "t / a.path", "segment"),
        ("attributes: {'bad name': v}", "t / bad name", "spaces"),
        ("attributes: {a: v}\n  urgent_when: {changed: v}", "t / urgent_when", "Debezium"),
        ("attributes: {a: v}\n  skip_when: {path: v, like: x}", "t / skip_when", "exactly one"),
        ("attributes: {a: v}\n  colour: red", "t / colour", "unknown key"),
    ],
)
def test_bad_mapping_files_name_topic_entry_and_path(body: str, where: str, why: str) -> None:
    text = "mappings:\n- topic: t\n  profile: {id: id}\n  occurred_at: at\n  " + body + "\n"
    with pytest.raises(MappingSpecError) as caught:
        parse_text(text, EXAMPLES)
    assert where in caught.value.problems, caught.value.problems
    assert why in caught.value.problems[where]


def test_duplicate_yaml_keys_are_refused_not_silently_dropped() -> None:
    text = (
        "mappings:\n- topic: t\n  profile: {id: id}\n  occurred_at: at\n"
        "  attributes: {a: v, a: w}\n"
    )
    with pytest.raises(MappingSpecError, match="duplicate key 'a'"):
        parse_text(text, EXAMPLES)


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = textwrap.dedent(
        """
        mappings:
          - topic: a
            profile: {id: id, id_type: EMAIL}
            occurred_at: {path: at, unit: fortnights}
            attributes: {x: v}
          - topic: a
            occurred_at: at
            attributes: {y: v}
        """
    )
    with pytest.raises(MappingSpecError) as caught:
        parse_text(text, EXAMPLES)
    assert {"a / profile.id_type", "a / occurred_at.unit", "a / profile"} <= set(
        caught.value.problems
    )
