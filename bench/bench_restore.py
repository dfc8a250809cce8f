"""Restoration of the owner's memory, and the size of the repartition hop.

1. Writes BENCH_PROFILES (default 1,000,000) changelog records (3 attributes each, as
   the owner writes them) to a fresh changelog topic of BENCH_PARTITIONS (default 12)
   partitions, then restores every partition into the carry-forward guard as a new owner
   of all of them would, and prints wall and CPU seconds.
2. Prints the bytes of one repartition record (key + value) and one changelog record for
   a typical sample event, and the CPU cost of encoding and decoding the repartition
   record with this codec and with the one before it (tests/legacy/internal_format.py).

Numbers, not a test. Against the broker of BENCH_BOOTSTRAP (default 127.0.0.1:29092):
`.venv/bin/python -m bench.bench_restore`; part 2 alone (no broker):
`.venv/bin/python -m bench.bench_restore format`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable

from confluent_kafka.admin import AdminClient

from consumer.core import internal_format
from consumer.core.internal_format import record_key
from consumer.core.model import IdType, TopicPartition
from consumer.core.owner_memory import LoggedCarry, encode_stamps
from consumer.kafka import internal_topics
from consumer.kafka.changelog import ChangelogRestorer
from consumer.kafka.internal_topics import InternalTopics
from consumer.kafka.repartition import RepartitionProducer

BOOTSTRAP = os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:29092")
PROFILES = int(os.environ.get("BENCH_PROFILES", "1000000"))
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "12"))


def restore_bench() -> None:
    conf = {"bootstrap.servers": BOOTSTRAP}
    group = f"bench-restore-{uuid.uuid4().hex[:8]}"
    rep, log = internal_topics.names(group, "", "")
    topics = InternalTopics(rep, log, PARTITIONS, 3_600_000)
    internal_topics.ensure(conf, topics)
    try:
        producer = RepartitionProducer(conf, rep, log)
        t0 = time.monotonic()
        for i in range(PROFILES):
            stamps = {"loyalty.tier": 1_712_000_000_000 + i, "store.last": 1_712_000_000_500 + i,
                      "consent.email": 1_711_000_000_000}  # fmt: skip
            producer.log(record_key(IdType.THIRD_PARTY_ID, f"cust-{i:08d}"), encode_stamps(stamps))
            if i % 10_000 == 0:
                producer.poll()
        producer.flush(120)
        print(f"wrote {PROFILES:,} changelog records in {time.monotonic() - t0:.1f}s "
              f"({producer.bytes_logged / PROFILES:.0f} bytes each, key + value)")  # fmt: skip
        carry = LoggedCarry(PROFILES + 1, lambda k, v: None)
        restorer = ChangelogRestorer({**conf, "group.id": group}, log, 3600)
        wall, cpu = time.monotonic(), time.process_time()
        read = restorer.restore(set(range(PARTITIONS)), carry.restore, beat=lambda: None)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        print(f"restored {read:,} records ({len(carry):,} profiles in memory) from "
              f"{PARTITIONS} partitions: {wall:.1f}s wall, {cpu:.1f}s CPU "
              f"({read / wall:,.0f} records/s)")  # fmt: skip
    finally:
        AdminClient(conf).delete_topics([rep, log], operation_timeout=10)


def _cpu_us(fn: Callable[[], object], n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1e6


def format_bench() -> None:
    """Bytes of one repartition record; CPU per encode/decode, this codec vs the old one.

    The old codec is tests/legacy/internal_format.py (the oracle of the byte-identity
    tests). Rounds alternate old and new; the median of BENCH_FORMAT_ROUNDS (default 5)
    is printed. The forward stage calls ``encode_keyed`` (key and value in one pass).
    """
    from tests.legacy import internal_format as legacy
    from tests.utils import make_update

    update = internal_format.decode(
        internal_format.encode(
            make_update(
                "3f1e9c2a-7b4d-4f7e-9a51-0c2b8d6e4a10",
                {"loyalty.tier": "gold", "store.last": "store-0042", "basket.total": "84.20"},
                tp=TopicPartition("pos.profile-changes", 5),
                offset=123_456_789,
                occurred_at=1_764_250_000_123,
            )._replace(source="POS", event_id="9b2f6c1e-ev")
        )
    )
    value = internal_format.encode(update)
    assert value == legacy.encode(update), "the codecs disagree: run the oracle tests"
    key = record_key(update.id_type, update.profile_id)
    n = 100_000
    rounds = int(os.environ.get("BENCH_FORMAT_ROUNDS", "5"))
    cases: dict[str, Callable[[], object]] = {
        "old key+encode": lambda: (legacy.record_key(update.id_type, update.profile_id),
                                   legacy.encode(update)),
        "new encode_keyed": lambda: internal_format.encode_keyed(update),
        "old decode": lambda: legacy.decode(value),
        "new decode": lambda: internal_format.decode(value),
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            times[name].append(_cpu_us(fn, n))
    load = os.getloadavg()[0]
    print(f"repartition record of a 3-attribute event: {len(key)} + {len(value)} bytes; "
          f"CPU per call, median of {rounds} rounds of {n:,}; load {load:.2f}")  # fmt: skip
    for name, ts in times.items():
        print(f"  {name:18} {statistics.median(ts):.2f} us")


if __name__ == "__main__":
    format_bench()
    if sys.argv[1:] != ["format"]:
        restore_bench()
