"""Urgent-path latency on the local stack: produce an URGENT event -> Target has it.

Starts a local Kafka (deploy/local/kafka.sh, port BENCH_KAFKA_PORT, default 29192) and the
Target emulator, runs ``profile-sync run`` with a 10 s linger, creates the profiles through
bulk first (the single-update API never creates a profile), then produces URGENT events at
a steady rate and reports the delay from the moment each was handed to Kafka to the
moment the emulator received its single update (p50, p90, p99, max).

Numbers, not a test: `make bench`, or `.venv/bin/python bench/bench_urgent.py`.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from emulator.app import EmulatorApp
from emulator.client import EmulatorControl
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka.sh"
PORT = int(os.environ.get("BENCH_KAFKA_PORT", "29192"))
EVENTS = int(os.environ.get("BENCH_URGENT_EVENTS", "300"))
RATE = float(os.environ.get("BENCH_URGENT_RATE", "50"))  # urgent events per second


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def event(pid: str, attrs: dict[str, Any], priority: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "source": "CRM",
        "occurred_at": int(time.time() * 1000),
        "profile": {"id_type": "THIRD_PARTY_ID", "id": pid},
        "priority": priority,
        "attributes": attrs,
    }


def main() -> None:
    schema = fastavro.parse_schema(json.loads((REPO / "schemas/profile_change.avsc").read_text()))
    env = {**os.environ, "KAFKA_PORT": str(PORT)}
    subprocess.run([str(KAFKA), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{PORT}"
    topic, dlq = f"bench.urgent.{uuid.uuid4().hex[:6]}", f"bench.dlq.{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dlq, 1, 1)]).values():
        f.result()
    server = EmulatorServer(EmulatorApp(EmulatorConfig()), port=0)
    server.start()
    control = EmulatorControl(server.url)
    service = None
    try:
        service = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"],
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA_GROUP_ID": f"bench-urgent-{uuid.uuid4().hex[:6]}",
                "PROFILE_SYNC_TOPICS": topic,
                "PROFILE_SYNC_DLQ_TOPIC": dlq,
                "PROFILE_SYNC_TARGET_URL": server.url,
                "PROFILE_SYNC_TARGET_CLIENT": "acme",
                "PROFILE_SYNC_BATCH_LINGER_SECONDS": "10",
                "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
                "PROFILE_SYNC_HTTP_PORT": str(free_port()),
                "PROFILE_SYNC_LOG_LEVEL": "warning",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

        def send(e: dict[str, Any]) -> None:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, e)
            producer.produce(topic, key=e["profile"]["id"].encode(), value=buf.getvalue())
            producer.poll(0)

        profiles = [f"crm-{i:05d}" for i in range(EVENTS)]
        for pid in profiles:
            send(event(pid, {"tier": "silver"}, "NORMAL"))
        producer.flush(30)
        control.wait_until(lambda: control.stats()["profiles"] >= EVENTS, 60)

        sent_at: dict[str, float] = {}
        started = time.monotonic()
        for n, pid in enumerate(profiles):
            while time.monotonic() < started + n / RATE:
                time.sleep(0.001)
            sent_at[pid] = time.time()
            send(event(pid, {"tier": "gold", "probe": n}, "URGENT"))
        producer.flush(30)

        def received() -> dict[str, float]:
            out = {}
            for pid, attrs in control.profiles(details=True)["thirdPartyId"].items():
                probe = attrs.get("probe")
                if probe is not None and str(probe.get("source", "")).startswith("single"):
                    out[pid] = datetime.fromisoformat(probe["modifiedAt"]).timestamp()
            return out

        got = control.wait_until(lambda: (r := received()) and len(r) >= EVENTS and r, 60)
        delays = sorted((got[p] - sent_at[p]) * 1000 for p in profiles if p in got)
        pct = {q: delays[min(len(delays) - 1, int(len(delays) * q / 100))] for q in (50, 90, 99)}
        print(f"urgent path: {len(delays)} events at {RATE:g}/s, bulk linger 10 s")
        print(
            f"  produce -> Target single update: p50 {pct[50]:.1f} ms   p90 {pct[90]:.1f} ms   "
            f"p99 {pct[99]:.1f} ms   max {delays[-1]:.1f} ms"
        )
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        server.stop()
        subprocess.run([str(KAFKA), "stop"], env=env, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
