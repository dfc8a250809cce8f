"""The whole service from two trees on one backlog: is a change faster or slower?

``.venv/bin/python bench/compare_trees.py REF`` checks out REF (a commit, branch or tag)
into ``.local/bench-compare/REF``, produces one backlog of BENCH_EVENTS (default 300,000)
sample events on a local Kafka (BENCH_KAFKA_PORT, default 29392; or BENCH_BOOTSTRAP, a
running broker), then drains it with fresh consumer groups from the old tree and from
this one, alternating, BENCH_ROUNDS times (default 3). For each drain it prints events/s
over the consuming time (the service's own summary) and events per CPU-second of the
service process (start-up included), then the medians. BENCH_REPARTITION=never|always
sets the mode of both. Comparing in one run, alternating, is what makes the numbers
comparable on a shared machine; the CPU-second figure is the steadier of the two when
others load it.

Numbers, not a test.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

from bench_service import KAFKA, REPO, free_port

from emulator.app import EmulatorApp
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer

PORT = int(os.environ.get("BENCH_KAFKA_PORT", "29392"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# PROFILE_SYNC_REPARTITION for both trees: "never" measures the direct mode's path (the
# backlog's two topics otherwise make ``auto`` choose the repartition mode).
MODE = os.environ.get("BENCH_REPARTITION", "")
# --exit-when-idle: releases before the fix counted turns paused by backpressure as idle
# and could stop mid-backlog while carry-forward waited for completions; give them time.
IDLE = os.environ.get("BENCH_IDLE_SECONDS", "2")


def checkout(ref: str) -> Path:
    where = REPO / ".local" / "bench-compare" / ref.replace("/", "_")
    if not where.exists():
        where.parent.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", ref], cwd=REPO, capture_output=True, check=True
        ).stdout
        where.mkdir()
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def drain(tree: Path, bootstrap: str, topics: list[str], target_url: str) -> tuple[float, float]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROFILE_SYNC_"))},
        "PYTHONPATH": str(tree),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": f"bench-compare-{uuid.uuid4().hex[:8]}",
        "PROFILE_SYNC_TOPICS": ",".join(topics),
        "PROFILE_SYNC_DLQ_TOPIC": topics[0] + ".dlq",
        "PROFILE_SYNC_TARGET_URL": target_url,
        "PROFILE_SYNC_TARGET_CLIENT": "acme",
        "PROFILE_SYNC_BATCH_LINGER_SECONDS": "1",
        "PROFILE_SYNC_SINGLE_ENABLED": "false",
        "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
        "PROFILE_SYNC_HTTP_PORT": str(free_port()),
        "PROFILE_SYNC_LOG_LEVEL": "warning",
    }
    if MODE:
        env["PROFILE_SYNC_REPARTITION"] = MODE
    # BENCH_ENV="NAME=value,...": settings to try, for both trees.
    env.update(kv.split("=", 1) for kv in os.environ.get("BENCH_ENV", "").split(",") if kv)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "run", "--exit-when-idle", IDLE, "--summary"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["events_consumed"] == EVENTS, summary
    return float(summary["events_per_second"]), EVENTS / cpu


def main() -> None:
    ref = sys.argv[1] if len(sys.argv) > 1 else "HEAD~1"
    trees = {ref: checkout(ref), "this tree": REPO}
    env = {**os.environ, "KAFKA_PORT": str(PORT)}
    shared = os.environ.get("BENCH_BOOTSTRAP", "")  # a running broker: none is started
    if not shared:
        subprocess.run([str(KAFKA), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    bootstrap = shared or f"127.0.0.1:{PORT}"
    run_id = uuid.uuid4().hex[:6]
    topics = [f"bench.pos.{run_id}", f"bench.crm.{run_id}"]
    server = EmulatorServer(
        EmulatorApp(EmulatorConfig(bulk_rate_limit=0, status_retention_count=0)), port=0
    )
    server.start()
    try:
        produce = [sys.executable, "-m", "consumer", "produce-sample"]
        produce += ["--bootstrap-servers", bootstrap, "--topic-pos", topics[0]]
        produce += ["--topic-crm", topics[1], "--count", str(EVENTS)]
        produce += ["--profiles", str(EVENTS // 5), "--create-topics", "6", "--quiet"]
        subprocess.run(produce, check=True, cwd=REPO)
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topics[0] + ".dlq", 1, 1)]).values():
            future.result()
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for round_no in range(ROUNDS):
            order = list(trees.items()) if round_no % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                rate, per_cpu = drain(tree, bootstrap, topics, server.url)
                results[name].append((rate, per_cpu))
                print(f"{name:>12}: {rate:>9,.0f} events/s  {per_cpu:>9,.0f} events/CPU-s")
        print(f"load average after the run: {os.getloadavg()[0]:.2f}")
        for name, runs in results.items():
            rate = statistics.median(r for r, _ in runs)
            per_cpu = statistics.median(c for _, c in runs)
            print(f"median {name:>12}: {rate:>9,.0f} events/s  {per_cpu:>9,.0f} events/CPU-s")
    finally:
        server.stop()
        if not shared:
            subprocess.run([str(KAFKA), "stop"], env=env, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
