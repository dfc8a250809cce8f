"""Start-up cost of ``profile-sync run``: CPU seconds and wall time from exec to ready.

Issue 14 asks for under one second of CPU to ready on this machine. Each round starts the
service against a real broker and the emulator, in both modes (``direct``: one topic,
``PROFILE_SYNC_REPARTITION=never``; ``repartition``: two topics, the internal topics made
and the changelog read back), polls ``/readyz`` every 50 ms, and reads the process's CPU
time (user + system, /proc) the moment it answers 200; then stops it. Printed per mode:
median and worst over ``BENCH_ROUNDS`` rounds (default 5), and the CPU of importing what
``run`` needs alone (``python -c 'import consumer.commands.run'``), for scale.

Environment: BENCH_BOOTSTRAP (a running broker; else one is started on BENCH_KAFKA_PORT,
29292), BENCH_ROUNDS. Numbers, not a test: `make bench`, or
`.venv/bin/python bench/bench_startup.py`.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import stack
from bench_emulator import cpu_seconds

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 60.0


def ready(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def one_start(bootstrap: str, url: str, mode: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) from exec to ready."""
    topics = stack.new_topics(f"bench.startup-{mode}")
    stack.create_topics(bootstrap, topics, 3)
    env = stack.service_env(bootstrap, topics, url)
    if mode == "direct":
        env["PROFILE_SYNC_TOPICS"] = topics[0]
        env["PROFILE_SYNC_REPARTITION"] = "never"
    env["PYTHONPATH"] = str(stack.REPO)
    started = time.monotonic()
    service = subprocess.Popen(
        [sys.executable, "-m", "consumer", "run"],
        env=env,
        cwd=stack.REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = env["PROFILE_SYNC_HTTP_PORT"]
    try:
        while not ready(port):
            if service.poll() is not None:
                raise SystemExit(f"profile-sync run ({mode}) exited with {service.returncode}")
            if time.monotonic() - started > TIMEOUT_SECONDS:
                raise SystemExit(f"profile-sync run ({mode}) not ready in {TIMEOUT_SECONDS} s")
            time.sleep(POLL_SECONDS)  # a polling pace, not a wait for timing
        return cpu_seconds(service.pid), time.monotonic() - started
    finally:
        service.terminate()
        service.wait(60)


def import_cpu() -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-c", "import consumer.commands.run"],
        cwd=stack.REPO,
        env={**os.environ, "PYTHONPATH": str(stack.REPO)},
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    modes = ("direct", "repartition")
    with stack.emulator() as url, stack.broker(29292) as bootstrap:
        results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for _ in range(ROUNDS):
            for mode in modes:
                results[mode].append(one_start(bootstrap, url, mode))
        imports = statistics.median(import_cpu() for _ in range(3))
    print(
        f"start-up to ready, {ROUNDS} rounds, load {stack.load_average()}; importing what "
        f"`run` needs alone: {imports:.2f} CPU-s"
    )
    for mode in modes:
        cpu = [c for c, _ in results[mode]]
        wall = [w for _, w in results[mode]]
        print(
            f"  {mode:<12} CPU {statistics.median(cpu):.2f} s (worst {max(cpu):.2f})   "
            f"wall {statistics.median(wall):.2f} s (worst {max(wall):.2f})"
        )


if __name__ == "__main__":
    main()
