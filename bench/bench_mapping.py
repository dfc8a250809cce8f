"""What a mapping costs per event: the contract's ``to_update`` vs the same contract as the
bundled mapping vs a 10-attribute POS ``Purchase`` mapping (schemas/examples/).

Issue 13 bounds it: a 10-attribute mapping may cost at most 15% of throughput against the
built-in contract. Throughput is what the service's pure hot path sustains on one core
(decode -> map/validate -> coalesce -> cut files), so the figure that matters is the
per-event difference relative to that whole path, printed last. CPU time
(``time.process_time``), best of ``ROUNDS`` rounds, all in one run. Numbers, not a test:
``.venv/bin/python -m bench.bench_mapping``.
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

from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.decode import Decoder, load_schema
from consumer.core.model import TopicPartition
from consumer.core.validate import to_update
from consumer.mapping import load_builtin, load_file, parse_text
from sampler.events import generate_events

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "schemas" / "profile_change.avsc"
EXAMPLES = ROOT / "schemas" / "examples"
N = 100_000
ROUNDS = 7
START_MS = 1_767_225_600_000
EXPLICIT = """
mappings:
  - topic: t
    profile: {id: profile.id, id_type_from: profile.id_type}
    occurred_at: occurred_at
    source_from: source
    event_id: event_id
    priority_from: priority
    attributes:
      lastStoreId: attributes.lastStoreId
      lastPurchaseAmount: {path: attributes.lastPurchaseAmount, transform: number}
      lastPurchaseAt: {path: attributes.lastPurchaseAt, transform: date, format: datetime}
      purchaseCount: attributes.purchaseCount
      lastPurchaseCategory: {path: attributes.lastPurchaseCategory, transform: lower}
      basketSize: attributes.basketSize
      loyaltyTier: {path: attributes.loyaltyTier, transform: upper}
      loyaltyPoints: attributes.loyaltyPoints
      emailOptIn: {path: attributes.emailOptIn, transform: boolean}
      city: attributes.city
"""


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
            for _ in range(rng.randint(1, 6))
        ]
        out.append(
            {
                "purchase_id": f"R-{i:09d}",
                "customer": {"number": f"6280{rng.randrange(50_000):09d}", "email": None},
                "store": {"id": f"store-{rng.randrange(250):04d}", "region": "North"},
                "purchased_at": START_MS + i * 40,
                "basket_total": sum(
                    (it["unit_price"] * it["quantity"] for it in items), Decimal(0)
                ),
                "currency": "EUR",
                "payment": rng.choice([None, "cash", {"brand": "visa", "last4": "4242"}]),
                "points_earned": rng.choice([None, rng.randrange(500)]),
                "items": items,
            }
        )
    return out


def encode(schema: dict[str, Any], records: list[dict[str, Any]]) -> list[bytes]:
    parsed = fastavro.parse_schema(schema)
    out = []
    for record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, record)
        out.append(buf.getvalue())
    return out


def best(fn: Callable[[], Any]) -> float:
    """Best CPU seconds of ROUNDS runs."""
    times = []
    for _ in range(ROUNDS):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def us(seconds: float) -> str:
    return f"{seconds / N * 1e6:6.2f} us/event  ({N / seconds:>10,.0f} events/CPU-s)"


def main() -> None:
    contract = load_schema(CONTRACT)
    pos_schema = json.loads((EXAMPLES / "pos_purchase.avsc").read_text("utf-8"))
    events = list(generate_events(N, 50_000, 0.02, 0.1, 0.6, 7, START_MS))
    contract_records = Decoder(contract, writer_schema=contract)
    contract_payloads = encode(contract, events)
    decoded = [contract_records.decode(v) for v in contract_payloads]
    pos_payloads = encode(pos_schema, purchases(N))
    pos_decoder = Decoder(None, writer_schema=pos_schema)
    pos_decoded = [pos_decoder.decode(v) for v in pos_payloads]
    tp = TopicPartition("pos.purchases", 0)
    builtin = load_builtin().entries[0].apply
    pos_entry = load_file(EXAMPLES / "pos_purchase.mapping.yaml").for_topic("pos.purchases")
    assert pos_entry is not None
    pos = pos_entry.apply
    attrs = sum(len(u.attributes) for u in (pos(r, tp, 0, None) for r in pos_decoded[:1000]))
    print(
        f"{N:,} events per run, best of {ROUNDS}; POS mapping: {attrs / 1000:.1f} attributes/event"
    )

    t_validate = best(lambda: [to_update(r, tp, i) for i, r in enumerate(decoded)])
    t_builtin = best(lambda: [builtin(r, tp, i, None) for i, r in enumerate(decoded)])
    t_pos = best(lambda: [pos(r, tp, i, None) for i, r in enumerate(pos_decoded)])
    # The same contract records through 10 explicit attributes instead of the whole map:
    # identical input, so the difference is the mapping's cost alone.
    explicit = parse_text(EXPLICIT, EXAMPLES).entries[0].apply
    t_explicit = best(lambda: [explicit(r, tp, i, None) for i, r in enumerate(decoded)])
    t_decode = best(lambda: [contract_records.decode(v) for v in contract_payloads])
    t_pos_decode = best(lambda: [pos_decoder.decode(v) for v in pos_payloads])
    updates = [to_update(r, tp, i) for i, r in enumerate(decoded)]
    pos_updates = [pos(r, tp, i, None) for i, r in enumerate(pos_decoded)]

    def coalesce(batch: list[Any]) -> Callable[[], None]:
        def run() -> None:
            batcher = Batcher(BatchLimits(500_000, 49_000_000, 3600), CarryForward(100_000))
            for u in batch:
                if u is not None:
                    batcher.add(u, 0.0)
            batcher.cut_all("bench")
            batcher.take_ready()

        return run

    t_batch = best(coalesce(updates))
    t_pos_batch = best(coalesce(pos_updates))

    print(f"contract, to_update (today)           {us(t_validate)}")
    print(f"contract, as the bundled mapping      {us(t_builtin)}")
    print(f"contract, 10 explicit attributes      {us(t_explicit)}")
    print(f"POS Purchase, 10-attribute mapping    {us(t_pos)}")
    print(f"decode ProfileChange                  {us(t_decode)}")
    print(f"decode Purchase                       {us(t_pos_decode)}")
    print(f"coalesce + cut, contract updates      {us(t_batch)}")
    print(f"coalesce + cut, POS updates           {us(t_pos_batch)}")
    path = t_decode + t_validate + t_batch
    for label, mapping_time in (
        ("bundled mapping", t_builtin),
        ("10 explicit attributes", t_explicit),
        ("POS mapping", t_pos),
    ):
        extra = mapping_time - t_validate
        print(
            f"{label}: {extra / N * 1e6:+.2f} us/event vs to_update = "
            f"{extra / path * 100:+.1f}% of the contract's pure hot path "
            f"({path / N * 1e6:.2f} us/event); throughput x{path / (path + extra):.3f}"
        )


if __name__ == "__main__":
    main()
