"""The whole service on a backlog: events/s with metrics on and off, in one run.

Starts a local Kafka (BENCH_KAFKA_PORT, default 29292) and the Target emulator, produces
BENCH_EVENTS (default 300,000) sample POS/CRM events once, then drains the same backlog
with fresh consumer groups, alternating PROFILE_SYNC_METRICS_ENABLED=true/false
BENCH_ROUNDS times (default 2), and prints events/s over the consuming time of each run
(start-up and idle time excluded) and the mean cost of metrics.

Numbers, not a test: `make bench`, or `.venv/bin/python bench/bench_service.py`.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

from emulator.app import EmulatorApp
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka.sh"
PORT = int(os.environ.get("BENCH_KAFKA_PORT", "29292"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drain(bootstrap: str, topics: list[str], target_url: str, metrics: bool) -> float:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROFILE_SYNC_"))},
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": f"bench-service-{uuid.uuid4().hex[:8]}",
        "PROFILE_SYNC_TOPICS": ",".join(topics),
        "PROFILE_SYNC_DLQ_TOPIC": topics[0] + ".dlq",
        "PROFILE_SYNC_TARGET_URL": target_url,
        "PROFILE_SYNC_TARGET_CLIENT": "acme",
        "PROFILE_SYNC_BATCH_LINGER_SECONDS": "1",
        "PROFILE_SYNC_SINGLE_ENABLED": "false",
        "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
        "PROFILE_SYNC_HTTP_PORT": str(free_port()),
        "PROFILE_SYNC_LOG_LEVEL": "warning",
        "PROFILE_SYNC_METRICS_ENABLED": "true" if metrics else "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "run", "--exit-when-idle", "2", "--summary"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["events_consumed"] == EVENTS, summary
    return float(summary["events_per_second"])


def main() -> None:
    env = {**os.environ, "KAFKA_PORT": str(PORT)}
    subprocess.run([str(KAFKA), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{PORT}"
    run_id = uuid.uuid4().hex[:6]
    topics = [f"bench.pos.{run_id}", f"bench.crm.{run_id}"]
    server = EmulatorServer(EmulatorApp(EmulatorConfig()), port=0)
    server.start()
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "consumer",
                "produce-sample",
                "--bootstrap-servers",
                bootstrap,
                "--topic-pos",
                topics[0],
                "--topic-crm",
                topics[1],
                "--count",
                str(EVENTS),
                "--profiles",
                str(EVENTS // 5),
                "--create-topics",
                "6",
                "--quiet",
            ],
            check=True,
            cwd=REPO,
        )
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topics[0] + ".dlq", 1, 1)]).values():
            future.result()
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(ROUNDS):
            for metrics in (True, False):
                rate = drain(bootstrap, topics, server.url, metrics)
                rates[metrics].append(rate)
                print(f"metrics {'on ' if metrics else 'off'}  {rate:>10,.0f} events/s")
        on, off = statistics.mean(rates[True]), statistics.mean(rates[False])
        print(
            f"{EVENTS:,} events, mean with metrics {on:,.0f}/s, without {off:,.0f}/s: "
            f"metrics cost {100 * (off - on) / off:+.1f}%"
        )
    finally:
        server.stop()
        subprocess.run([str(KAFKA), "stop"], env=env, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
