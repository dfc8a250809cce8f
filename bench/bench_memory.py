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
BENCH_MALLOCSTATS=1 also prints where the growth is: pymalloc's arenas and blocks by size
class (``sys._debugmallocstats()`` in the service, through bench/mallocstats), glibc's
``mallinfo2`` and the RSS of the process's mappings by kind (/proc/PID/smaps).
Numbers, not a test: `make bench`, or `.venv/bin/python bench/bench_memory.py`.
"""

from __future__ import annotations

import os
import re
import signal
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
MALLOCSTATS = os.environ.get("BENCH_MALLOCSTATS", "") == "1"
PROBE = Path(__file__).resolve().parent / "mallocstats"


def mapping_rss(pid: int) -> dict[str, int]:
    """RSS by kind of mapping: glibc's main heap, anonymous (pymalloc's arenas, glibc's
    thread arenas and large blocks, librdkafka's buffers), files (code, data)."""
    out = {"[heap]": 0, "anonymous": 0, "file": 0, "other": 0}
    kind = "other"
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split()
            if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
                name = head[5] if len(head) > 5 else ""
                kind = "anonymous" if not name else "file" if name.startswith("/") else name
                kind = kind if kind in out else "other"
            elif head[0] == "Rss:":
                out[kind] += int(head[1]) * 1024
    return out


def allocators(service: subprocess.Popen[bytes], path: Path) -> dict[str, int]:
    """The service's allocator figures (bench/mallocstats/sitecustomize.py writes them)."""
    path.unlink(missing_ok=True)
    service.send_signal(signal.SIGUSR1)
    stack.wait_for(path.exists, 30, "the service's malloc statistics")
    lines = path.read_text().splitlines()
    out = {f"glibc {k}": int(v) for k, v in (kv.split("=") for kv in lines[0].split())}
    for line in lines[1:]:
        if m := re.fullmatch(r"\s*\d+\s+(\d+)\s+\d+\s+(\d+)\s+\d+", line):
            out[f"class {m[1]}"] = int(m[2]) * int(m[1])  # bytes of blocks in use
        elif m := re.match(r"# arenas allocated current\s*=\s*(\d+)", line):
            out["pymalloc arenas"] = int(m[1]) << 20  # 1 MiB each (3.10+)
        elif m := re.match(r"# bytes in (allocated|available) blocks\s*=\s*([\d,]+)", line):
            out[f"pymalloc {m[1]}"] = int(m[2].replace(",", ""))
        elif m := re.match(r"(\d+) unused pools \* (\d+) bytes", line):
            out["pymalloc unused pools"] = int(m[1]) * int(m[2])
    return out


def breakdown(before: dict[str, int], after: dict[str, int], rows: float) -> str:
    """Growth per buffered profile of each figure, the largest size classes last."""

    def per(key: str) -> float:
        return (after.get(key, 0) - before.get(key, 0)) / rows

    lines = [
        f"  mappings: [heap] {per('[heap]'):+.0f}, anonymous {per('anonymous'):+.0f},"
        f" file {per('file'):+.0f} B/profile of RSS",
        f"  pymalloc: arenas {per('pymalloc arenas'):+.0f} B/profile, of which blocks in use"
        f" {per('pymalloc allocated'):+.0f}, free in used pools {per('pymalloc available'):+.0f},"
        f" unused pools {per('pymalloc unused pools'):+.0f}",
        f"  glibc: in use {per('glibc uordblks') + per('glibc hblkhd'):+.0f} B/profile (large"
        f" blocks {per('glibc hblkhd'):+.0f}), free kept {per('glibc fordblks'):+.0f}"
        " (resident only until a trim)",
    ]
    classes = sorted((k for k in after if k.startswith("class ")), key=per, reverse=True)
    lines.append(
        "  pymalloc blocks in use by size: "
        + ", ".join(f"{k[6:]} B {per(k):+.0f}" for k in classes[:8])
    )
    return "\n".join(lines)


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
    stats = stack.REPO / ".local" / f"mallocstats-{port}.txt"
    if MALLOCSTATS:
        stats.parent.mkdir(exist_ok=True)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROBE), env.get("PYTHONPATH")]))
        env["BENCH_MALLOCSTATS_FILE"] = str(stats)
    service = subprocess.Popen([sys.executable, "-m", "consumer", "run"], env=env, cwd=tree)
    try:
        stack.wait_for(
            lambda: stack.scrape(port, "profile_sync_partitions_assigned") >= 12, 60, "assigned"
        )
        idle = stack.rss_bytes(service.pid)
        if MALLOCSTATS:
            idle_stats = {**mapping_rss(service.pid), **allocators(service, stats)}
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
        if MALLOCSTATS:
            full_stats = {**mapping_rss(service.pid), **allocators(service, stats)}
            print(breakdown(idle_stats, full_stats, rows), flush=True)
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
