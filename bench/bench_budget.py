"""The tenant call budget: bulk-API calls a minute at 1, 2 and 4 replicas under one load,
and how many events one call carries when calls are scarce.

Against the emulator with Target's limit ON (50 calls a minute per tenant, 503 past it) and
its status retention (last 10), the service at its defaults but for a 1 s linger (so that
without the budget every replica would upload twice a second per id type).

1. Steady load: a producer writes BENCH_RATE events/s (default 400) for BENCH_SECONDS
   (default 150) while N replicas (1, 2, 4) consume; the emulator counts every bulk-API
   call (uploads and status polls). Printed: calls a minute over the run, the most in any
   rolling minute, 503s, uploads, events per upload.
2. Backlog: BENCH_BACKLOG events (default 300,000) drained by one replica; printed: events
   per upload and events/s, from which the rate one budget carries follows (events per
   upload x uploads a minute).

Uses the broker at BENCH_BOOTSTRAP if set, else starts one (BENCH_KAFKA_PORT, 29292).
Numbers, not a test: `.venv/bin/python bench/bench_budget.py`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from emulator.app import EmulatorApp
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer
from sampler.events import generate_events, route
from tests.fixtures.kafka import encode_profile_change

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka.sh"
RATE = int(os.environ.get("BENCH_RATE", "400"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "150"))
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "300000"))
REPLICAS = [int(n) for n in os.environ.get("BENCH_REPLICAS", "1,2,4").split(",") if n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def topics(admin: AdminClient, run: str) -> list[str]:
    names = [f"bench.budget.pos.{run}", f"bench.budget.crm.{run}"]
    for fut in admin.create_topics([NewTopic(n, 4, 1) for n in names]).values():
        fut.result(30)
    return names


def produce(bootstrap: str, names: list[str], count: int, rate: float, seed: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": "20"})
    start = time.monotonic()
    events = generate_events(
        count,
        profiles=max(1000, count // 5),
        urgent_share=0.0,
        pcid_share=0.2,
        pos_share=0.7,
        seed=seed,
        start_ms=1_700_000_000_000,
    )
    for i, ev in enumerate(events):
        topic, key, _ = route(ev, names[0], names[1])
        value = encode_profile_change(ev)
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:  # librdkafka's queue is full: serve deliveries first
                producer.poll(0.1)
        if i % 100 == 0:
            producer.poll(0)
        if rate > 0 and i % 100 == 0:
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # pacing the load generator, not waiting for a result
    producer.flush(60)


def service(bootstrap: str, names: list[str], url: str, group: str, *args: str) -> Any:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROFILE_SYNC_"))},
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "PROFILE_SYNC_TOPICS": ",".join(names),
        "PROFILE_SYNC_DLQ_TOPIC": names[0] + ".dlq",
        "PROFILE_SYNC_TARGET_URL": url,
        "PROFILE_SYNC_TARGET_CLIENT": "acme",
        "PROFILE_SYNC_BATCH_LINGER_SECONDS": "1",
        "KAFKA_SESSION_TIMEOUT_MS": "10000",
        "PROFILE_SYNC_SINGLE_ENABLED": "false",
        "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
        "PROFILE_SYNC_HTTP_PORT": str(free_port()),
        "PROFILE_SYNC_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "consumer", "run", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if os.environ.get("BENCH_QUIET", "1") == "1" else None,
        text=True,
    )


def emulator() -> EmulatorServer:
    return EmulatorServer(EmulatorApp(EmulatorConfig()), port=0).start()  # Target's limits


def steady(bootstrap: str, admin: AdminClient, replicas: int) -> dict[str, Any]:
    server = emulator()
    names = topics(admin, uuid.uuid4().hex[:6])
    group = f"bench-budget-{uuid.uuid4().hex[:6]}"
    procs = [service(bootstrap, names, server.url, group) for _ in range(replicas)]
    count = int(RATE * SECONDS)
    started = time.monotonic()
    producer = threading.Thread(target=produce, args=(bootstrap, names, count, RATE, replicas))
    producer.start()
    producer.join()
    elapsed = time.monotonic() - started
    stats = json.loads(_get(server.url + "/_emulator/stats"))
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)
    server.stop()
    rate = stats["bulk_rate"]
    uploads = stats["bulk_requests"]
    return {
        "replicas": replicas,
        "events": count,
        "minutes": round(elapsed / 60, 2),
        "calls_per_minute": round(rate["calls_counted"] / (elapsed / 60), 1),
        "peak_calls_in_a_minute": rate["peak_calls_in_window"],
        "refused_503": rate["refused_503"],
        "uploads": uploads,
        "status_polls": stats["status_requests"],
        "events_per_upload": round(count / max(1, uploads), 1),
    }


def backlog(bootstrap: str, admin: AdminClient) -> dict[str, Any]:
    server = emulator()
    names = topics(admin, uuid.uuid4().hex[:6])
    produce(bootstrap, names, BACKLOG, 0, 99)
    group = f"bench-budget-{uuid.uuid4().hex[:6]}"
    proc = service(bootstrap, names, server.url, group, "--exit-when-idle", "3", "--summary")
    out, _ = proc.communicate(timeout=3600)
    summary = json.loads(out.strip().splitlines()[-1])
    stats = json.loads(_get(server.url + "/_emulator/stats"))
    server.stop()
    uploads = stats["bulk_requests"]
    rows, sent = stats["rows_received"], stats["bytes_received"]
    # A full batch is cut at the byte cap (16 MB default) long before 500,000 rows here.
    full_rows = min(500_000, 16_000_000 // max(1, sent // max(1, rows)))
    events_per_full = full_rows * BACKLOG / max(1, rows)
    return {
        "events": BACKLOG,
        "rows": rows,
        "bytes_per_row": round(sent / max(1, rows), 1),
        "events_per_row": round(BACKLOG / max(1, rows), 2),
        "events_per_full_batch": round(events_per_full),
        # Every call of the default budget (40 a minute) carrying a full batch, polls none:
        "events_per_second_one_budget_carries": round(events_per_full * 40 / 60),
        "uploads": uploads,
        "status_polls": stats["status_requests"],
        "events_per_upload": round(BACKLOG / max(1, uploads)),
        "events_per_second": summary["events_per_second"],
        "peak_calls_in_a_minute": stats["bulk_rate"]["peak_calls_in_window"],
        "refused_503": stats["bulk_rate"]["refused_503"],
    }


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def main() -> None:
    bootstrap = os.environ.get("BENCH_BOOTSTRAP", "")
    port = int(os.environ.get("BENCH_KAFKA_PORT", "29292"))
    if not bootstrap:
        env = {**os.environ, "KAFKA_PORT": str(port)}
        subprocess.run([str(KAFKA), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
        bootstrap = f"127.0.0.1:{port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for n in REPLICAS:
        print(json.dumps({"steady": steady(bootstrap, admin, n)}), flush=True)
    if BACKLOG:
        print(json.dumps({"backlog": backlog(bootstrap, admin)}), flush=True)


if __name__ == "__main__":
    main()
