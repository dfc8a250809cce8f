"""Resident memory per buffered profile of the running service.

Starts ``profile-sync run`` with a linger long enough that nothing is cut (urgent path
off), reads its RSS once it is assigned and idle, produces BENCH_EVENTS (300,000) sample
events over BENCH_MEMORY_PROFILES (100,000) profiles, waits until every event is consumed
and SETTLE_SECONDS more (steady state), and reads the RSS again: (RSS buffered - RSS
idle) / profiles buffered, next to the encoded bytes the buffer holds (what
PROFILE_SYNC_BUFFER_MAX_BYTES bounds).

Environment: BENCH_BOOTSTRAP (a running broker; else one is started on BENCH_KAFKA_PORT,
29492). Numbers, not a test: `make bench`, or `.venv/bin/python bench/bench_memory.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import stack

EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
PROFILES = int(os.environ.get("BENCH_MEMORY_PROFILES", "100000"))
SETTLE_SECONDS = 6.0


def main() -> None:
    with stack.broker(29492) as bootstrap, stack.emulator() as url:
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
        service = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"], env=env, cwd=stack.REPO
        )
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
            print(
                f"{EVENTS:,} events, {rows:,.0f} profiles buffered, load {stack.load_average()}\n"
                f"RSS idle {idle / 2**20:.1f} MiB, buffered {full / 2**20:.1f} MiB: "
                f"{(full - idle) / rows:,.0f} bytes per buffered profile "
                f"(encoded {encoded / rows:,.0f} bytes per profile, "
                f"{(full - idle) / encoded:.1f}x)"
            )
        finally:
            service.terminate()
            service.wait(60)


if __name__ == "__main__":
    main()
