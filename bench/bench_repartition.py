"""The repartition mode against the direct mode: events per CPU-second on the same backlog,
in one run, and the extra Kafka bytes per event (docs/repartition.md).

Produces BENCH_EVENTS (default 100,000) sample POS/CRM events to two fresh topics of the
broker at BENCH_BOOTSTRAP (default 127.0.0.1:29092), then drains that backlog with one
replica and a fresh consumer group per run, alternating PROFILE_SYNC_REPARTITION=never
and always BENCH_ROUNDS times (default 2). CPU is the service process's user + system
time (start-up included, the same in both modes). After each repartition run the two
internal topics are read back to count their bytes (key + value, before compression).

Numbers, not a test: `.venv/bin/python -m bench.bench_repartition`.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from emulator.app import EmulatorApp
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:29092")
EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drain(topics: list[str], target_url: str, mode: str) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, group) of one replica draining the backlog."""
    group = f"bench-repartition-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROFILE_SYNC_"))},
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "KAFKA_GROUP_ID": group,
        "PROFILE_SYNC_TOPICS": ",".join(topics),
        "PROFILE_SYNC_DLQ_TOPIC": topics[0] + ".dlq",
        "PROFILE_SYNC_TARGET_URL": target_url,
        "PROFILE_SYNC_TARGET_CLIENT": "acme",
        "PROFILE_SYNC_BATCH_LINGER_SECONDS": "1",
        "PROFILE_SYNC_SINGLE_ENABLED": "false",
        "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
        "PROFILE_SYNC_HTTP_PORT": str(free_port()),
        "PROFILE_SYNC_LOG_LEVEL": "warning",
        "PROFILE_SYNC_REPARTITION": mode,
        "PROFILE_SYNC_REPARTITION_PARTITIONS": "6",
    }
    cpu, wall = _cpu_children(), time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "run", "--exit-when-idle", "2", "--summary"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    cpu, wall = _cpu_children() - cpu, time.monotonic() - wall - 2.0  # minus the idle wait
    json.loads(done.stdout.strip().splitlines()[-1])  # it finished with a summary
    return cpu, wall, group


def topic_bytes(topic: str) -> tuple[int, int]:
    """(records, key + value bytes) of a whole topic."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": True})  # fmt: skip
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.subscribe([topic])
    left = set(meta.partitions)
    records = size = 0
    deadline = time.monotonic() + 120
    while left and time.monotonic() < deadline:
        for m in c.consume(5000, 1.0):
            if m.error() is not None:
                if m.error().code() == -191:  # _PARTITION_EOF
                    left.discard(m.partition())
                continue
            records += 1
            size += len(m.key() or b"") + len(m.value() or b"")
    c.close()
    return records, size


def main() -> None:
    run_id = uuid.uuid4().hex[:6]
    topics = [f"bench.pos.{run_id}", f"bench.crm.{run_id}"]
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    server = EmulatorServer(
        EmulatorApp(EmulatorConfig(bulk_rate_limit=0, status_retention_count=0)), port=0
    )
    server.start()
    created = [*topics, topics[0] + ".dlq"]
    try:
        subprocess.run(
            [sys.executable, "-m", "consumer", "produce-sample", "--bootstrap-servers",
             BOOTSTRAP, "--topic-pos", topics[0], "--topic-crm", topics[1], "--count",
             str(EVENTS), "--profiles", str(EVENTS // 5), "--create-topics", "6", "--quiet"],
            check=True, cwd=REPO,
        )  # fmt: skip
        source_records = source_bytes = 0
        for t in topics:
            n, b = topic_bytes(t)
            source_records += n
            source_bytes += b
        print(f"backlog: {source_records:,} events, {source_bytes / source_records:.0f} bytes each")
        rates: dict[str, list[float]] = {"never": [], "always": []}
        for _ in range(ROUNDS):
            for mode in ("never", "always"):
                cpu, wall, group = drain(topics, server.url, mode)
                rates[mode].append(EVENTS / cpu)
                print(f"{mode:>6}: {cpu:6.1f} s CPU, {wall:6.1f} s wall: "
                      f"{EVENTS / cpu:,.0f} events per CPU-second")  # fmt: skip
                if mode == "always":
                    created += [f"{group}.repartition", f"{group}.changelog"]
                    rn, rb = topic_bytes(f"{group}.repartition")
                    cn, cb = topic_bytes(f"{group}.changelog")
                    print(f"        repartition {rn:,} records, {rb / EVENTS:.0f} bytes/event; "
                          f"changelog {cn:,} records, {cb / EVENTS:.0f} bytes/event "
                          "(before compaction and compression)")  # fmt: skip
        direct, repart = statistics.mean(rates["never"]), statistics.mean(rates["always"])
        print(f"mean: direct {direct:,.0f}, repartition {repart:,.0f} events per CPU-second "
              f"({100 * (repart - direct) / direct:+.0f}%)")  # fmt: skip
    finally:
        server.stop()
        admin.delete_topics(created, operation_timeout=10)


if __name__ == "__main__":
    main()
