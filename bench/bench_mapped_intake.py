"""Events per CPU-second through the service's intake: the built-in contract against a
10-attribute mapping, in the same run (issue 13: a mapping may cost at most 15%).

The intake is the real one (``consumer.core.intake.Intake``: decode -> map -> coalesce,
offsets tracked, metrics on), fed ``Record``s in consume batches of 5,000 as the loop
does, and the buffer cut into batch files at the end of each run. Three inputs:

- ``contract``: ``ProfileChange`` records with 10 attributes each, read by the built-in
  mapping (``schemas/profile_change.mapping.yaml``, what the service does by default);
- ``10 attributes``: the same bytes read by a mapping that names the 10 attributes one by
  one with transforms (number, date, lower, upper, boolean): the same input, so the
  difference is what a 10-attribute mapping costs;
- ``POS Purchase``: the 10-attribute example mapping of schemas/examples/ over POS
  ``Purchase`` records (decimals, line items, unions): other bytes, whose decoding alone
  costs more than a ProfileChange's, shown for scale.

CPU time (``time.process_time``), best of ``ROUNDS`` rounds, the inputs interleaved in each
round. Numbers, not a test: ``.venv/bin/python -m bench.bench_mapped_intake``.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from prometheus_client import CollectorRegistry

from consumer.clock import SystemClock
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.decode import load_schema
from consumer.core.intake import Intake
from consumer.core.model import DeadLetter
from consumer.core.seams import Record
from consumer.core.settling import Settling
from consumer.core.summary import Summary
from consumer.mapping import RecordMapper, load_builtin, load_file, parse_text
from consumer.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "schemas" / "profile_change.avsc"
EXAMPLES = ROOT / "schemas" / "examples"
N = 100_000
PROFILES = 50_000
BATCH = 5_000  # records per consume() call, the default PROFILE_SYNC_CONSUME_BATCH_SIZE
ROUNDS = 5
START_MS = 1_767_225_600_000
BOUND = 0.15
TEN = """
mappings:
  - topic: contract
    schema: {contract}
    profile: {{id: profile.id, id_type_from: profile.id_type}}
    occurred_at: occurred_at
    source_from: source
    event_id: event_id
    priority_from: priority
    attributes:
      lastStoreId: attributes.lastStoreId
      lastPurchaseAmount: {{path: attributes.lastPurchaseAmount, transform: number}}
      lastPurchaseAt: {{path: attributes.lastPurchaseAt, transform: date, format: datetime}}
      purchaseCount: attributes.purchaseCount
      lastPurchaseCategory: {{path: attributes.lastPurchaseCategory, transform: lower}}
      basketSize: attributes.basketSize
      loyaltyTier: {{path: attributes.loyaltyTier, transform: upper}}
      loyaltyPoints: attributes.loyaltyPoints
      emailOptIn: {{path: attributes.emailOptIn, transform: boolean}}
      city: attributes.city
"""


def contract_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """ProfileChange events with the 10 attributes the explicit mapping names."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = rng.randrange(PROFILES)
        out.append(
            {
                "event_id": f"{i:032x}",
                "source": "POS",
                "occurred_at": START_MS + i * 40,
                "profile": {"id_type": "THIRD_PARTY_ID", "id": f"crm-{p:06d}"},
                "priority": "NORMAL",
                "attributes": {
                    "lastStoreId": f"store-{rng.randrange(250):04d}",
                    "lastPurchaseAmount": rng.randrange(50, 20_000) / 100,
                    "lastPurchaseAt": START_MS + i * 40,
                    "purchaseCount": rng.randrange(1, 400),
                    "lastPurchaseCategory": rng.choice(["Grocery", "Home & Garden", "Baby"]),
                    "basketSize": rng.randrange(1, 30),
                    "loyaltyTier": rng.choice(["bronze", "silver", "gold"]),
                    "loyaltyPoints": rng.randrange(100_000),
                    "emailOptIn": rng.random() < 0.5,
                    "city": rng.choice(["Zürich", "São Paulo", "Kraków", "東京"]),
                },
            }
        )
    return out


def purchases(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        items = [
            {
                "sku": f"SKU-{rng.randrange(10_000):05d}",
                "category": rng.choice(["Grocery", "Home & Garden", "Baby", "Wine & Spirits"]),
                "quantity": rng.randint(1, 4),
                "unit_price": Decimal(rng.randrange(50, 20_000)) / 100,
            }
            for _ in range(rng.choice((1, 1, 2, 3, 5)))
        ]
        out.append(
            {
                "purchase_id": f"R-{i:09d}",
                "customer": {"number": f"crm-{rng.randrange(PROFILES):06d}", "email": None},
                "store": {"id": f"store-{rng.randrange(250):04d}", "region": "North"},
                "purchased_at": START_MS + i * 40,
                "basket_total": sum(
                    (it["unit_price"] * it["quantity"] for it in items), Decimal("0.00")
                ),
                "currency": "EUR",
                "payment": rng.choice([None, "cash", {"brand": "visa", "last4": "4242"}]),
                "points_earned": rng.choice([None, rng.randrange(500)]),
                "items": items,
            }
        )
    return out


def records(topic: str, schema: dict[str, Any], values: list[dict[str, Any]]) -> list[Record]:
    parsed = fastavro.parse_schema(schema)
    out = []
    for offset, value in enumerate(values):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, value)
        out.append(Record(topic, 0, offset, None, buf.getvalue(), START_MS + offset))
    return out


class _NoDeadLetters:
    pending = 0

    def __init__(self, on_settled: Callable[[int], None]) -> None:
        self.sent = 0

    def send(self, letter: DeadLetter, unit: int) -> None:
        self.sent += 1

    def poll(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0


def run_once(mapper: RecordMapper, batch: list[Record]) -> tuple[float, int]:
    """CPU seconds to take ``batch`` through a fresh intake and cut it; rows cut."""
    clock = SystemClock()
    batcher = Batcher(BatchLimits(500_000, 49_000_000, 3600), CarryForward(100_000))
    settling = Settling(_NoDeadLetters)
    summary = Summary(clock)
    intake = Intake(
        mapper=mapper,
        batcher=batcher,
        settling=settling,
        single=None,
        metrics=Metrics(CollectorRegistry()),
        summary=summary,
        clock=clock,
    )
    t0 = time.process_time()
    for start in range(0, len(batch), BATCH):
        intake.take(batch[start : start + BATCH])
    batcher.cut_all("bench")
    files = batcher.take_ready()
    elapsed = time.process_time() - t0
    assert summary.events_poison == 0, "every record must map"
    return elapsed, sum(f.row_count for f in files)


def main() -> None:
    contract_schema = load_schema(CONTRACT)
    pos_schema = json.loads((EXAMPLES / "pos_purchase.avsc").read_text("utf-8"))
    contract_records = records("contract", contract_schema, contract_events(N))
    pos_records = records("pos.purchases", pos_schema, purchases(N))
    builtin = RecordMapper(load_builtin(), None, contract_schema)
    ten = RecordMapper(parse_text(TEN.format(contract=CONTRACT), ROOT), None)
    pos = RecordMapper(load_file(EXAMPLES / "pos_purchase.mapping.yaml"), None)
    cases: list[tuple[str, RecordMapper, list[Record]]] = [
        ("contract (built-in mapping)", builtin, contract_records),
        ("contract, 10 named attributes", ten, contract_records),
        ("POS Purchase, 10 attributes", pos, pos_records),
    ]
    best: dict[str, float] = {}
    rows: dict[str, int] = {}
    for _ in range(ROUNDS):
        for label, mapper, batch in cases:
            elapsed, cut = run_once(mapper, batch)
            best[label] = min(best.get(label, elapsed), elapsed)
            rows[label] = cut
    print(f"{N:,} records per run through Intake.take + cut, best of {ROUNDS} (CPU time)")
    for label, _, _ in cases:
        seconds = best[label]
        print(
            f"  {label:32} {N / seconds:>10,.0f} events/CPU-s  "
            f"{seconds / N * 1e6:6.2f} us/event  ({rows[label]:,} rows)"
        )
    base = N / best[cases[0][0]]
    for label, _, _ in cases[1:]:
        cost = 1 - (N / best[label]) / base
        verdict = "within" if cost <= BOUND else "OVER"
        print(f"  {label}: {cost * 100:+.1f}% throughput cost vs the contract ({verdict} 15%)")


if __name__ == "__main__":
    main()
