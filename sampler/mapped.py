"""Records that are not our contract: POS ``Purchase`` and Debezium CRM ``customers`` events.

Plain values, no Kafka, no I/O, like ``sampler.events``. They exercise the mapping files
of ``schemas/examples/`` (docs/mapping.md) with what such systems really send: decimal
amounts (Avro ``decimal`` bytes, written from ``decimal.Decimal``), line-item arrays,
unions (a payment that is null, a string or a card record), refunds; and for the CRM
table the full Debezium life cycle of a row: snapshot reads, creates, updates with and
without a ``before`` image, deletes followed by a tombstone, rows created again.

The customers are the sample stream's: customer numbers ``crm-NNNNNN`` and loyalty card
numbers ``6280NNNNNNNNN`` over the same pool of profile indexes, so their profiles gain
the mapped attributes beside what the ``ProfileChange`` stream sets. The mapped attribute
names (``lastBasket*``, ``crm*``) are their own, so the final state of each is decided by
these records alone.

Each generated record comes with ``expect``: the attributes the example mapping must
produce for it, written here directly from the record (not through the mapping engine),
so a test or ``make demo`` can check Target's final state against them with
``expected_mapped_profiles``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import yaml

from consumer.mapping.spec import BUILTIN_MAPPING, EXAMPLES_DIR
from sampler.events import CATEGORIES, CITIES, FIRST_NAMES, STORES, TIERS

EXAMPLES = EXAMPLES_DIR
PURCHASE_SCHEMA = EXAMPLES / "pos_purchase.avsc"
CUSTOMERS_SCHEMA = EXAMPLES / "crm_customers_debezium.avsc"
DEFAULT_TOPIC_PURCHASES = "pos.purchases"
DEFAULT_TOPIC_CUSTOMERS = "crm.public.customers"
REGIONS = ("North", "South-East", "Île-de-France", "Bayern", "TRAINING")
# Share of purchases rung up on training tills: the POS mapping filters them out.
TRAINING_SHARE = 0.02
CARD_BRANDS = ("visa", "mastercard", "amex")
# Mean business time between two records of one stream.
MEAN_GAP_MS = 40.0
# Share of CRM changes that delete the row (a tombstone follows each delete).
DELETE_SHARE = 0.05
# Share of updates without a before image (a table without REPLICA IDENTITY FULL).
NO_BEFORE_SHARE = 0.3


@dataclass(frozen=True, slots=True)
class Mapped:
    """One record to produce. ``value`` None is a tombstone. ``expect`` None: no update."""

    topic: str
    key: str
    value: dict[str, Any] | None
    occurred_at: int
    expect: dict[str, str] | None


def customer_number(index: int, rng: random.Random) -> str:
    """A customer number of the sample stream's forms for profile ``index``."""
    return f"6280{index:09d}" if rng.random() < 0.3 else f"crm-{index:06d}"


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randrange(low, high)).scaleb(-2)


def _purchase_expect(p: dict[str, Any]) -> dict[str, str] | None:
    """What schemas/examples/pos_purchase.mapping.yaml makes of ``p``, written out by hand."""
    if p["store"]["region"] == "TRAINING":
        return None
    day = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=p["purchased_at"])
    payment = p["payment"]
    expect = {
        "lastBasketTotal": f"{p['basket_total']:.2f}",
        "lastBasketCurrency": p["currency"],
        "lastPurchaseStore": p["store"]["id"],
        "lastPurchaseRegion": p["store"]["region"].lower(),
        "lastPurchaseDate": day.strftime("%Y-%m-%d"),
        "lastBasketItems": str(len(p["items"])),
        "lastBasketUnits": str(sum(i["quantity"] for i in p["items"])),
        "lastPaymentBrand": payment["brand"].upper() if isinstance(payment, dict) else "OTHER",
    }
    categories = "|".join(i["category"].lower() for i in p["items"])
    if categories:
        expect["lastBasketCategories"] = categories
    if p["points_earned"] is not None:
        expect["lastPointsEarned"] = str(p["points_earned"])
    return expect


def generate_purchases(
    n: int, profiles: int, seed: int, start_ms: int, topic: str = DEFAULT_TOPIC_PURCHASES
) -> Iterator[Mapped]:
    """``n`` POS ``Purchase`` records over ``profiles`` customers; same seed, same records."""
    rng = random.Random(seed)
    numbers: dict[int, str] = {}
    last: dict[str, int] = {}
    clock = float(start_ms)
    for i in range(n):
        clock += rng.expovariate(1.0 / MEAN_GAP_MS)
        index = min(profiles - 1, int(profiles * rng.random() ** 1.5))
        number = numbers.get(index) or numbers.setdefault(index, customer_number(index, rng))
        at = max(int(clock), last.get(number, -1) + 1)
        last[number] = at
        items: list[dict[str, Any]] = [
            {
                "sku": f"SKU-{rng.randrange(100_000):05d}",
                "category": rng.choice(CATEGORIES),
                "quantity": rng.randint(1, 5),
                "unit_price": _money(rng, 10, 20_000),
            }
            for _ in range(rng.choice((0, 1, 1, 2, 3, 5, 8)))
        ]
        total = sum((it["unit_price"] * it["quantity"] for it in items), Decimal("0.00"))
        if rng.random() < 0.03:
            total = -_money(rng, 100, 5_000)  # a refund at the till
        region = "TRAINING" if rng.random() < TRAINING_SHARE else rng.choice(REGIONS[:-1])
        payment: Any = rng.choice(
            (None, "cash", "voucher", {"brand": rng.choice(CARD_BRANDS), "last4": "4242"})
        )
        record = {
            "purchase_id": f"R-{seed}-{i:09d}",
            "customer": {"number": number, "email": None},
            "store": {"id": f"store-{rng.randrange(1, STORES + 1):04d}", "region": region},
            "purchased_at": at,
            "basket_total": total,
            "currency": "EUR",
            "payment": payment,
            "points_earned": None if rng.random() < 0.2 else max(0, int(total)),
            "items": items,
        }
        yield Mapped(topic, number, record, at, _purchase_expect(record))


def _row(rng: random.Random, row_id: int, number: str, at_ms: int) -> dict[str, Any]:
    return {
        "id": row_id,
        "customer_number": number,
        "first_name": rng.choice(FIRST_NAMES),
        "email": None if rng.random() < 0.1 else f"{number}@Example.COM",
        "city": rng.choice(CITIES),
        "loyalty_tier": rng.choice(TIERS),
        "email_opt_in": rng.choice((True, False, None)),
        "birth_date": rng.randrange(-3_000, 12_000),
        "credit_limit": None if rng.random() < 0.2 else _money(rng, 0, 1_000_000),
        "updated_at": at_ms * 1000 + rng.randrange(1000),
    }


def _row_expect(row: dict[str, Any]) -> dict[str, str]:
    """What schemas/examples/crm_customers.mapping.yaml makes of an ``after`` image."""
    expect: dict[str, str] = {}
    for name, field in (("crmFirstName", "first_name"), ("crmCity", "city")):
        if row[field]:
            expect[name] = row[field]
    if row["loyalty_tier"]:
        expect["crmLoyaltyTier"] = row["loyalty_tier"]
    if row["email"]:
        expect["crmEmail"] = row["email"].lower()
    if row["email_opt_in"] is not None:
        expect["crmEmailOptIn"] = "true" if row["email_opt_in"] else "false"
    birth = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=row["birth_date"])
    expect["crmBirthDate"] = birth.strftime("%Y-%m-%d")
    if row["credit_limit"] is not None:
        expect["crmCreditLimit"] = f"{row['credit_limit']:.2f}"
    return expect


def _envelope(op: str, before: Any, after: Any, ts_ms: int) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final",
            "connector": "postgresql",
            "name": "crm",
            "ts_ms": ts_ms,
            "snapshot": "true" if op == "r" else None,
            "db": "crm",
            "schema": "public",
            "table": "customers",
            "lsn": None,
        },
        "op": op,
        "ts_ms": ts_ms + 50,
    }


def generate_customer_changes(
    n: int, profiles: int, seed: int, start_ms: int, topic: str = DEFAULT_TOPIC_CUSTOMERS
) -> Iterator[Mapped]:
    """``n`` Debezium change events of the CRM ``customers`` table (tombstones included).

    A row's first event is a snapshot read (``r``) or a create (``c``); then updates
    (``u``), now and then a delete (``d``) and its tombstone, after which the row may be
    created again. The Kafka key is the customer number (Debezium keys by primary key; a
    string key keeps the sample's keying rule: one profile, one partition).
    """
    rng = random.Random(seed)
    rows: dict[int, dict[str, Any]] = {}
    numbers: dict[int, str] = {}
    last: dict[int, int] = {}
    clock = float(start_ms)
    produced = 0
    while produced < n:
        clock += rng.expovariate(1.0 / MEAN_GAP_MS)
        index = min(profiles - 1, int(profiles * rng.random() ** 1.5))
        number = numbers.get(index) or numbers.setdefault(index, customer_number(index, rng))
        at = max(int(clock), last.get(index, -1) + 1)
        last[index] = at
        current = rows.get(index)
        if current is None:
            op = "r" if produced < n // 5 else "c"
            after = _row(rng, 1_000_000 + index, number, at)
            rows[index] = after
            value = _envelope(op, None, after, at)
            yield Mapped(topic, number, value, at, _row_expect(after))
            produced += 1
            continue
        if rng.random() < DELETE_SHARE and produced + 2 <= n:
            del rows[index]
            yield Mapped(topic, number, _envelope("d", current, None, at), at, None)
            yield Mapped(topic, number, None, at, None)  # the tombstone after a delete
            produced += 2
            continue
        after = dict(current)
        for name in rng.sample(["first_name", "email", "city", "loyalty_tier", "credit_limit"], 2):
            after[name] = _row(rng, current["id"], number, at)[name]
        after["updated_at"] = at * 1000 + rng.randrange(1000)
        rows[index] = after
        before = None if rng.random() < NO_BEFORE_SHARE else current
        yield Mapped(topic, number, _envelope("u", before, after, at), at, _row_expect(after))
        produced += 1


def dump_line(record: Mapped) -> str:
    """One JSON line of a ``--dump`` file for a mapped record (decimals as strings)."""
    return json.dumps(
        {
            "topic": record.topic,
            "key": record.key,
            "occurred_at": record.occurred_at,
            "expect": record.expect,
        },
        ensure_ascii=False,
    )


def expected_mapped_profiles(lines: Iterable[str]) -> dict[tuple[str, str], dict[str, str]]:
    """Fold mapped dump lines into {("THIRD_PARTY_ID", id): {attribute: Target string}}.

    The newest ``occurred_at`` wins per attribute (on a tie, the later line), as for the
    contract; records without ``expect`` (deletes, tombstones, filtered) change nothing.
    Lines of the ``ProfileChange`` stream (with ``event``) are ignored: fold those with
    ``sampler.events.expected_profiles``.
    """
    newest: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        if "event" in entry or not entry.get("expect"):
            continue
        row = newest.setdefault(("THIRD_PARTY_ID", entry["key"]), {})
        at = entry["occurred_at"]
        for name, value in entry["expect"].items():
            if name not in row or row[name][0] <= at:
                row[name] = (at, value)
    return {k: {n: v for n, (_, v) in row.items()} for k, row in newest.items() if row}


def mapping_file_text(
    contract_topics: Iterable[str],
    purchases_topic: str | None = None,
    customers_topic: str | None = None,
) -> str:
    """A mapping file (YAML) for the sample streams: the built-in ``ProfileChange`` mapping
    for ``contract_topics`` and the example mappings of ``schemas/examples/`` pointed at
    the purchases and customers topics. Schema paths are absolute, so the file can live
    anywhere (``make demo`` writes it beside its state)."""
    entries: list[dict[str, Any]] = []

    def entry(file: Any, **changes: Any) -> dict[str, Any]:
        found = dict(yaml.safe_load(file.read_text("utf-8"))["mappings"][0])
        for key in ("topic", "topics", "topic_pattern"):
            found.pop(key, None)
        for key in ("schema", "reader_schema"):
            if key in found:
                found[key] = str(file.parent / found[key])
        return {**changes, **found}

    topics = list(contract_topics)
    if topics:
        entries.append(entry(BUILTIN_MAPPING, topics=topics))
    if purchases_topic:
        entries.append(entry(EXAMPLES / "pos_purchase.mapping.yaml", topic=purchases_topic))
    if customers_topic:
        entries.append(entry(EXAMPLES / "crm_customers.mapping.yaml", topic=customers_topic))
    return yaml.safe_dump({"version": 1, "mappings": entries}, sort_keys=False, allow_unicode=True)
