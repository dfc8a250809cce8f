"""How long an URGENT event waits inside one consumed batch, in CPU time (in process).

After a stall upstream the service takes a full consumed batch at once (1,000 records by
default) and an URGENT event near its end waits for every record before it to be decoded
and coalesced. This feeds the intake batches of ``BENCH_BATCH`` (1,000) contract records,
NORMAL ones over 50,000 profiles with one URGENT event at a random position, under the
service's collector policy, and measures the thread's CPU time from the start of the batch
to the event's offer to the single-update path, and to the end of the batch. No broker,
no clock: CPU time of one thread, robust to machine load.

`PYTHONPATH=<tree> .venv/bin/python bench/bench_urgent_in_batch.py` measures another tree
(its ``Intake`` and ``Batcher``); numbers, not a test: `make bench` runs it.
"""

from __future__ import annotations

import io
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import fastavro

from consumer import config
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.intake import Intake
from consumer.core.model import ProfileUpdate
from consumer.core.seams import Record
from consumer.core.settling import Settling
from consumer.core.summary import Summary
from consumer.interpreter import Collector
from consumer.mapping.startup import build_mapper
from consumer.target.urgent import SingleOutcome

BATCH = int(os.environ.get("BENCH_BATCH", "1000"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "200"))
TOPIC = "crm.profile-changes"
SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "profile_change.avsc"


class _Clock:
    def monotonic(self) -> float:
        return 1000.0

    def time(self) -> float:
        return 1_700_000_000.0


class _Single:
    """Stands in for the single updater: notes the CPU time of the offer."""

    offered_at = 0.0

    def offer(self, update: ProfileUpdate, batch_id: int, now: float) -> SingleOutcome:
        self.offered_at = time.thread_time()
        return SingleOutcome.QUEUED


def encode(writer: Any, pid: str, n: int, priority: str) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf,
        writer,
        {
            "event_id": f"e{n}",
            "source": "CRM",
            "occurred_at": 1_699_999_000_000 + n,
            "profile": {"id_type": "THIRD_PARTY_ID", "id": pid},
            "priority": priority,
            "attributes": {"tier": random.choice(["gold", "silver"]), "store": f"s{n % 300}"},
        },
    )
    return buf.getvalue()


def main() -> None:
    settings = config.load(
        {
            "PROFILE_SYNC_TARGET_URL": "http://127.0.0.1:8080",
            "PROFILE_SYNC_TARGET_CLIENT": "acme",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
            "PROFILE_SYNC_TOPICS": TOPIC,
        }
    )
    writer = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
    random.seed(7)
    carry = CarryForward(1_000_000, 1 << 34)
    batcher = Batcher(BatchLimits(500_000, 50_000_000, 3600.0), carry)
    single = _Single()
    intake = Intake(
        mapper=build_mapper(settings, None),
        batcher=batcher,
        settling=Settling(lambda on_settled: None),  # type: ignore[arg-type,return-value]
        single=single,  # type: ignore[arg-type]
        metrics=None,
        summary=Summary(_Clock()),  # type: ignore[arg-type]
        clock=_Clock(),  # type: ignore[arg-type]
    )
    # The service's collector policy (consumer/interpreter.py), as `run` applies it.
    Collector(0.0).start()
    offset = 0
    to_offer, whole, positions = [], [], []
    for _ in range(BATCHES):
        at = random.randrange(BATCH)
        records = []
        for i in range(BATCH):
            urgent = i == at
            pid = f"vip-{offset}" if urgent else f"p{random.randrange(50_000):05d}"
            value = encode(writer, pid, offset, "URGENT" if urgent else "NORMAL")
            records.append(Record(TOPIC, 0, offset, pid.encode(), value, 0))
            offset += 1
        start = time.thread_time()
        intake.take(records)
        end = time.thread_time()
        to_offer.append((single.offered_at - start) * 1000)
        whole.append((end - start) * 1000)
        positions.append(at)
    late = [t for t, at in zip(to_offer, positions, strict=True) if at >= BATCH * 0.9]
    print(
        f"{BATCHES} batches of {BATCH} records, one URGENT event at a random place: CPU ms "
        f"from the batch's start to its offer: median {statistics.median(to_offer):.1f}, "
        f"max {max(to_offer):.1f}; when it is in the last tenth: median "
        f"{statistics.median(late) if late else float('nan'):.1f}; the whole batch: median "
        f"{statistics.median(whole):.1f}"
    )


if __name__ == "__main__":
    main()
