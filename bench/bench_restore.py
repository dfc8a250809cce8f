"""Restoration of the owner's memory, and the size of the repartition hop.

1. Writes BENCH_PROFILES (default 1,000,000) changelog records (3 attributes each, as
   the owner writes them) to a fresh changelog topic of BENCH_PARTITIONS (default 12)
   partitions, then restores every partition into the carry-forward guard as a new owner
   of all of them would, and prints wall and CPU seconds.
2. Prints the bytes of one repartition record (key + value) and one changelog record for
   a typical sample event, beside its Avro source record, and the CPU cost of encoding
   and decoding the repartition record.

Numbers, not a test. Against the broker of BENCH_BOOTSTRAP (default 127.0.0.1:29092):
`.venv/bin/python -m bench.bench_restore`.
"""

from __future__ import annotations

import os
import time
import uuid

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


def format_bench() -> None:
    update = internal_format.decode(
        internal_format.encode(
            __import__("tests.utils", fromlist=["make_update"]).make_update(
                "3f1e9c2a-7b4d-4f7e-9a51-0c2b8d6e4a10",
                {"loyalty.tier": "gold", "store.last": "store-0042", "basket.total": "84.20"},
                tp=TopicPartition("pos.profile-changes", 5),
                offset=123_456_789,
            )
        )
    )
    value = internal_format.encode(update)
    key = record_key(update.id_type, update.profile_id)
    n = 200_000
    t = time.process_time()
    for _ in range(n):
        internal_format.encode(update)
    enc = (time.process_time() - t) / n * 1e6
    t = time.process_time()
    for _ in range(n):
        internal_format.decode(value)
    dec = (time.process_time() - t) / n * 1e6
    print(f"repartition record of a 3-attribute event: {len(key)} + {len(value)} bytes; "
          f"encode {enc:.2f} us, decode {dec:.2f} us (CPU)")  # fmt: skip


if __name__ == "__main__":
    format_bench()
    restore_bench()
