"""Resident memory per buffered profile of the running service.

Starts ``profile-sync run`` with a linger long enough that nothing is cut (urgent path
off), reads its RSS once it is assigned and idle, produces BENCH_EVENTS (300,000) sample
events over BENCH_MEMORY_PROFILES (100,000) profiles, waits until every event is consumed
and SETTLE_SECONDS more (steady state), and reads the RSS again: (RSS buffered - RSS
idle) / profiles buffered, next to the encoded bytes the buffer holds (what
PROFILE_SYNC_BUFFER_MAX_BYTES bounds).

Environment: BENCH_BOOTSTRAP (a running broker; else one is started on BENCH_KAFKA_PORT,
29492); BENCH_BEFORE=REF measures an older commit's service before this one in each of
BENCH_ROUNDS rounds (default 1); BENCH_ENV="NAME=value,..." adds variables to the service.
Numbers, not a test: `make bench`, or `.venv/bin/python bench/bench_memory.py`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import stack
from bench_ceiling import checkout

EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
PROFILES = int(os.environ.get("BENCH_MEMORY_PROFILES", "100000"))
SETTLE_SECONDS = 6.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
# An older commit measured in the same rounds (before/after), e.g. BENCH_BEFORE=main.
BEFORE = os.environ.get("BENCH_BEFORE", "")


def measure(bootstrap: str, url: str, tree: Path) -> float:
    """One service from ``tree`` on a fresh backlog: prints and returns bytes per profile."""
    topics = stack.new_topics("bench.memory")
    stack.create_topics(bootstrap, topics, 6)
    env = stack.service_env(
        bootstrap,
        topics,
        url,
        batch_linger_seconds="3600",
        batch_max_bytes="49000000",
        buffer_max_bytes="1000000000",
        single_enabled="false",
    )
    # BENCH_ENV="NAME=value,...": extra variables for the service (an allocator or
    # librdkafka setting to try), e.g. BENCH_ENV=KAFKA_QUEUED_MAX_MESSAGES_KBYTES=16384.
    env.update(kv.split("=", 1) for kv in os.environ.get("BENCH_ENV", "").split(",") if kv)
    port = env["PROFILE_SYNC_HTTP_PORT"]
    service = subprocess.Popen([sys.executable, "-m", "consumer", "run"], env=env, cwd=tree)
    try:
        stack.wait_for(
            lambda: stack.scrape(port, "profile_sync_partitions_assigned") >= 12, 60, "assigned"
        )
        idle = stack.rss_bytes(service.pid)
        stack.produce_sample(bootstrap, topics, EVENTS, PROFILES, "--urgent-share", "0")
        stack.wait_for(
            lambda: stack.scrape(port, "profile_sync_events_consumed_total") >= EVENTS,
            300,
            "consumed",
        )
        # Steady state: what the service holds a few seconds after the last event.
        time.sleep(SETTLE_SECONDS)
        rows = stack.scrape(port, "profile_sync_buffer_rows")
        encoded = stack.scrape(port, "profile_sync_buffer_bytes")
        full = stack.rss_bytes(service.pid)
        per_profile = (full - idle) / rows
        print(
            f"{EVENTS:,} events, {rows:,.0f} profiles buffered, load {stack.load_average()}\n"
            f"RSS idle {idle / 2**20:.1f} MiB, buffered {full / 2**20:.1f} MiB: "
            f"{per_profile:,.0f} bytes per buffered profile "
            f"(encoded {encoded / rows:,.0f} bytes per profile, "
            f"{(full - idle) / encoded:.1f}x)",
            flush=True,
        )
        return per_profile
    finally:
        service.terminate()
        service.wait(60)


def main() -> None:
    with stack.broker(29492) as bootstrap, stack.emulator() as url:
        before = checkout(BEFORE) if BEFORE else None
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(ROUNDS):
            if before is not None:
                print(f"[{BEFORE}]", end=" ")
                theirs.append(measure(bootstrap, url, before))
                print("[this tree]", end=" ")
            mine.append(measure(bootstrap, url, stack.REPO))
        if ROUNDS > 1 or before is not None:
            line = f"median: this tree {statistics.median(mine):,.0f} bytes per buffered profile"
            if theirs:
                line += f", {BEFORE} {statistics.median(theirs):,.0f}"
            print(line)


if __name__ == "__main__":
    main()
