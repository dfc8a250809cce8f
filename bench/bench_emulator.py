"""Benchmark of the Target emulator over real HTTP (numbers, not a test).

Starts ``profile-sync emulator`` as a separate process on 127.0.0.1 (so the client does not
share its interpreter lock), then measures:

- bulk upload: 100,000-row batch files POSTed back to back; MB/s until each is accepted,
  and MB/s until every batch is also applied (status ``complete``);
- single updates: several threads, each a keep-alive ``httpx.Client``, sending GET updates
  for existing profiles; updates/s and latency percentiles.

The emulator runs with its bulk rate limit off and every batch status retained
(``--bulk-rate-limit 0 --status-retention-count 0``): the bench measures how fast it serves,
not Target's limit of 50 bulk-API calls a minute, which a status loop polling every 10 ms would
hit at once. Every loop is bounded in count and time. Environment knobs: BENCH_ROWS (100000),
BENCH_BATCHES (5), BENCH_SINGLE_THREADS (4), BENCH_SINGLE_SECONDS (5).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("BENCH_ROWS", 100_000))
BATCHES = int(os.environ.get("BENCH_BATCHES", 5))
THREADS = int(os.environ.get("BENCH_SINGLE_THREADS", 4))
SINGLE_SECONDS = float(os.environ.get("BENCH_SINGLE_SECONDS", 5))
START_TIMEOUT = 30.0
APPLY_TIMEOUT = 120.0


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).with_name("profile-sync")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "consumer"]
    proc = subprocess.Popen(
        [
            *cmd,
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--bulk-rate-limit",
            "0",
            "--status-retention-count",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(rb"(http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        if match:
            return proc, match.group(1).decode()
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the emulator did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to separate its cost from machine load."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_file(rows: int, offset: int) -> bytes:
    """A realistic consumer batch: percent-encoded cells, some empty."""
    rng = random.Random(offset)
    tiers = ["gold", "silver", "bronze", "platinum"]
    lines = ["batch=thirdPartyId,loyaltyTier,lifetimeValue,lastStoreId,city,lastPurchase"]
    for i in range(rows):
        store = f"store-{rng.randrange(500)}" if rng.random() < 0.7 else ""
        lines.append(
            f"crm-{offset + i:08d},{rng.choice(tiers)},{rng.random() * 5000:.2f},{store},"
            f"San%20Jos%C3%A9,2025-06-{rng.randrange(1, 29):02d}T10%3A00%3A00Z"
        )
    return ("\n".join(lines) + "\n").encode()


def bench_bulk(url: str, pid: int) -> None:
    files = [batch_file(ROWS, n * ROWS) for n in range(BATCHES)]
    total = sum(len(f) for f in files)
    status_urls = []
    cpu_before = cpu_seconds(pid)
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        for body in files:
            response = client.post(
                f"{url}/m2/acme/v2/profile/batchUpdate",
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            found = re.search(r"<batchStatus>([^<]+)</batchStatus>", response.text)
            if response.status_code != 200 or found is None:
                raise SystemExit(f"upload failed: {response.status_code} {response.text[:200]}")
            status_urls.append(found.group(1))
        accepted = time.perf_counter() - started
        deadline = time.monotonic() + APPLY_TIMEOUT
        pending = list(status_urls)
        while pending and time.monotonic() < deadline:
            if "<status>complete</status>" in client.get(pending[0]).text:
                pending.pop(0)
            else:
                time.sleep(0.01)
        applied = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    mb = total / 1e6
    rows = BATCHES * ROWS
    print(f"bulk: {BATCHES} files x {ROWS:,} rows, {mb / BATCHES:.1f} MB each ({mb:.1f} MB)")
    print(
        f"  accepted {accepted:6.2f} s {mb / accepted:7.1f} MB/s {rows / accepted:>10,.0f} rows/s"
    )
    if pending:
        print(f"  applied   not all complete within {APPLY_TIMEOUT:.0f} s")
    else:
        print(
            f"  applied  {applied:6.2f} s {mb / applied:7.1f} MB/s {rows / applied:>10,.0f} rows/s"
        )
    print(f"  emulator CPU {cpu:.2f} s: {mb / cpu:.1f} MB per CPU-second (accept + apply)")


def bench_single(url: str, pid: int) -> None:
    counts = [0] * THREADS
    latencies: list[list[float]] = [[] for _ in range(THREADS)]
    errors: list[str] = []
    stop_at = time.monotonic() + SINGLE_SECONDS
    per_thread_cap = 1_000_000

    def worker(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(per_thread_cap):
                if time.monotonic() >= stop_at:
                    return
                pid = f"crm-{rng.randrange(ROWS):08d}"
                t0 = time.perf_counter()
                response = client.get(
                    f"/m2/acme/profile/update?mbox3rdPartyId={pid}&profile.kioskVisit={i}"
                    "&profile.channel=store"
                )
                latencies[n].append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}")
                    return
                counts[n] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    done = sum(counts)
    lat = sorted(x for per in latencies for x in per)
    p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0
    print(f"single: {THREADS} threads, keep-alive, {elapsed:.1f} s")
    print(f"  {done:,} updates  {done / elapsed:,.0f}/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    print(f"  emulator CPU {cpu:.2f} s: {cpu / max(done, 1) * 1e6:.0f} us per update")
    if errors:
        print(f"  errors: {errors[:5]}")


def main() -> int:
    proc, url = start_emulator()
    try:
        print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        bench_bulk(url, proc.pid)
        bench_single(url, proc.pid)
        stats = httpx.get(f"{url}/_emulator/stats", timeout=30).json()
        print(
            f"emulator: {stats['profiles']:,} profiles, "
            f"{stats['single_updates']['applied']:,} single updates applied, "
            f"{stats['rows']['successful']:,} rows applied"
        )
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
