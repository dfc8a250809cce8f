"""The read-back audit's cost: events/s with a 1% audit on and off, and fetches per 1M events.

Produces BENCH_EVENTS (default 200,000) sample POS/CRM events once, then drains the same
backlog with fresh consumer groups, alternating PROFILE_SYNC_AUDIT_SAMPLE_SHARE=0.01 / 0
BENCH_ROUNDS times (default 2), with the default read rate and a settling delay of 0 so
the reads run while the backlog drains. Prints events/s over the consuming time of each
run, and the fetch calls the audit makes per 1,000,000 events at the default share: one
per sampled row of the batches Target received (counted from the emulator's batches; a
row holds all the events of one profile in one batch).

Uses the broker at BENCH_BOOTSTRAP if set, else starts one on BENCH_KAFKA_PORT (29292).
Numbers, not a test: `.venv/bin/python bench/bench_audit.py`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import uuid

from bench_service import KAFKA, REPO, free_port

from consumer.core.audit import sampled
from consumer.core.model import IdType
from emulator.app import EmulatorApp
from emulator.client import EmulatorControl
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer

EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
PORT = int(os.environ.get("BENCH_KAFKA_PORT", "29292"))
SHARE = 0.01


def drain(bootstrap: str, topics: list[str], target_url: str, share: float) -> float:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROFILE_SYNC_"))},
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": f"bench-audit-{uuid.uuid4().hex[:8]}",
        "PROFILE_SYNC_TOPICS": ",".join(topics),
        "PROFILE_SYNC_DLQ_TOPIC": topics[0] + ".dlq",
        "PROFILE_SYNC_TARGET_URL": target_url,
        "PROFILE_SYNC_TARGET_CLIENT": "acme",
        "PROFILE_SYNC_BATCH_LINGER_SECONDS": "1",
        "PROFILE_SYNC_SINGLE_ENABLED": "false",
        "PROFILE_SYNC_STATUS_POLL_INITIAL_SECONDS": "0.2",
        "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
        "PROFILE_SYNC_HTTP_PORT": str(free_port()),
        "PROFILE_SYNC_LOG_LEVEL": "warning",
        "PROFILE_SYNC_AUDIT_SAMPLE_SHARE": str(share),
        "PROFILE_SYNC_AUDIT_SETTLE_SECONDS": "0",
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


def sampled_rows(control: EmulatorControl, seen: set[str]) -> tuple[int, int]:
    """(rows, sampled rows) of the batches accepted since the last call."""
    rows = picked = 0
    for view in control.batches():
        batch_id = view["batchId"]
        if batch_id in seen:
            continue
        seen.add(batch_id)
        detail = control.batch(batch_id)
        id_type = IdType(detail["idType"])
        for row in detail["rows"] or []:
            rows += 1
            picked += sampled(id_type, row["id"], SHARE)
    return rows, picked


def main() -> None:
    bootstrap = os.environ.get("BENCH_BOOTSTRAP", "")
    env = {**os.environ, "KAFKA_PORT": str(PORT)}
    if not bootstrap:
        subprocess.run([str(KAFKA), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
        bootstrap = f"127.0.0.1:{PORT}"
    run_id = uuid.uuid4().hex[:6]
    topics = [f"bench.pos.{run_id}", f"bench.crm.{run_id}"]
    server = EmulatorServer(
        EmulatorApp(EmulatorConfig(bulk_rate_limit=0, status_retention_count=0)), port=0
    )
    server.start()
    control = EmulatorControl(server.url)
    try:
        subprocess.run(
            [sys.executable, "-m", "consumer", "produce-sample", "--bootstrap-servers",
             bootstrap, "--topic-pos", topics[0], "--topic-crm", topics[1], "--count",
             str(EVENTS), "--profiles", str(EVENTS // 5), "--create-topics", "6", "--quiet"],
            check=True,
            cwd=REPO,
        )  # fmt: skip
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topics[0] + ".dlq", 1, 1)]).values():
            future.result()
        rates: dict[bool, list[float]] = {True: [], False: []}
        seen: set[str] = set()
        sampled_sums = [0, 0]
        for _ in range(ROUNDS):
            for audit in (True, False):
                fetches_before = control.stats().get("fetch_requests", 0)
                rate = drain(bootstrap, topics, server.url, SHARE if audit else 0.0)
                rates[audit].append(rate)
                rows, picked = sampled_rows(control, seen)
                fetched = control.stats().get("fetch_requests", 0) - fetches_before
                if audit:
                    sampled_rows_total = sampled_sums[0] + picked
                    sampled_sums = [sampled_rows_total, sampled_sums[1] + rows]
                print(
                    f"audit {'on ' if audit else 'off'}  {rate:>10,.0f} events/s  "
                    f"rows {rows:,}  sampled {picked:,}  fetched before exit {fetched:,}"
                )
        on, off = statistics.mean(rates[True]), statistics.mean(rates[False])
        runs = len(rates[True])
        per_million = sampled_sums[0] / (EVENTS * runs) * 1_000_000
        print(
            f"{EVENTS:,} events, mean with a 1% audit {on:,.0f}/s, without {off:,.0f}/s: "
            f"audit cost {100 * (off - on) / off:+.1f}%; fetch calls per 1,000,000 events "
            f"at the defaults: {per_million:,.0f} ({sampled_sums[1] / runs:,.0f} rows per run)"
        )
    finally:
        control.close()
        server.stop()
        if not os.environ.get("BENCH_BOOTSTRAP"):
            subprocess.run([str(KAFKA), "stop"], env=env, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
