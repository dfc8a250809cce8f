"""The consumer's hot path without I/O: decode -> validate -> coalesce -> cut batch files.

Prints events/s per stage on one core and the memory held per buffered profile row, the
figures docs/deploy.md sizes pods with. Numbers, not a test: run `make bench`.
"""

from __future__ import annotations

import gc
import io
import json
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import fastavro

from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.decode import Decoder, load_schema
from consumer.core.model import TopicPartition
from consumer.core.validate import to_update

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "profile_change.avsc"
N = 200_000
PROFILES = 50_000


def make_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    tiers = ["bronze", "silver", "gold", "platinum"]
    cities = ["Zürich", "São Paulo", "New York", "Kraków", "東京"]
    out = []
    for i in range(n):
        p = rng.randrange(PROFILES)
        attrs: dict[str, Any] = {
            "loyaltyTier": rng.choice(tiers),
            "loyaltyPoints": rng.randrange(100_000),
            "emailOptIn": rng.random() < 0.5,
            "city": rng.choice(cities),
            "lastPurchaseAmount": round(rng.random() * 500, 2),
            "lastStoreId": f"store-{rng.randrange(400)}",
            "lastPurchaseCategory": rng.choice(["shoes", "kids & baby", "home, garden"]),
            "segment": rng.choice(["vip", "new", None]),
        }
        if rng.random() < 0.5:
            attrs["note"] = "called about order #12, 50% off & free shipping"
        out.append(
            {
                "event_id": f"00000000-0000-4000-8000-{i:012d}",
                "source": rng.choice(["POS", "CRM"]),
                "occurred_at": 1_700_000_000_000 + i,
                "profile": {"id_type": "THIRD_PARTY_ID", "id": f"crm-{p:07d}"},
                "priority": "NORMAL",
                "attributes": attrs,
            }
        )
    return out


def encode_all(events: list[dict[str, Any]]) -> list[bytes]:
    parsed = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
    out = []
    for e in events:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, e)
        out.append(buf.getvalue())
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} events/s  ({seconds / n * 1e6:6.2f} us/event)"


def main() -> None:
    events = make_events(N)
    payloads = encode_all(events)
    avg = sum(map(len, payloads)) / len(payloads)
    print(f"{N:,} events, {avg:.0f} bytes each on average, {PROFILES:,} profiles")
    schema = load_schema(SCHEMA)
    decoder = Decoder(schema, writer_schema=schema)
    tp = TopicPartition("pos.profile-changes", 0)

    t0 = time.perf_counter()
    records = [decoder.decode(v) for v in payloads]
    t1 = time.perf_counter()
    updates = [to_update(r, tp, i) for i, r in enumerate(records)]
    t2 = time.perf_counter()
    batcher = Batcher(BatchLimits(500_000, 49_000_000, 3600), CarryForward(100_000))
    for u in updates:
        if u is not None:
            batcher.add(u, 0.0)
    t3 = time.perf_counter()
    rows = batcher.buffered_rows
    encoded = batcher.buffered_bytes
    batcher.cut_all("bench")
    files = batcher.take_ready()
    t4 = time.perf_counter()

    print(f"decode (fastavro, no resolution)  {rate(N, t1 - t0)}")
    print(f"validate + render                 {rate(N, t2 - t1)}")
    print(f"coalesce into rows                {rate(N, t3 - t2)}")
    print(f"cut CSV files ({len(files)} file(s), {rows:,} rows) {rate(N, t4 - t3)}")
    print(f"whole pure path                   {rate(N, t4 - t0)}")
    print(f"encoded buffer: {encoded / rows:.0f} bytes per row")

    # Memory held by the buffer per profile row (what PROFILE_SYNC_BUFFER_MAX_BYTES bounds
    # in encoded bytes; this is the Python-object cost behind it).
    del records, files
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    batcher = Batcher(BatchLimits(500_000, 49_000_000, 3600), None)
    for u in updates:
        if u is not None:
            batcher.add(u, 0.0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_row = (after - before) / batcher.buffered_rows
    ratio = (after - before) / batcher.buffered_bytes
    print(
        f"buffer memory: {per_row:,.0f} bytes per buffered profile row "
        f"({ratio:.1f}x its encoded size)"
    )


if __name__ == "__main__":
    main()
