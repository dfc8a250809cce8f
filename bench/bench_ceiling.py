"""The service against the per-event ceiling, on one real-Kafka backlog, in one run.

The *ceiling* is a minimal loop doing only the unavoidable work: consume in batches of
10,000, fastavro ``schemaless_reader`` with the writer schema parsed once and logical types
stripped, the newest value per profile in a dict, and a percent-encoded CSV of every
buffered row at the end. The *service* is ``profile-sync run --exit-when-idle`` on the same
backlog (metrics on, carry-forward on, uploads to the emulator, the urgent path off).

The service runs in both of its modes in every round: ``direct``
(PROFILE_SYNC_REPARTITION=never, the path of one topic keyed by profile) and
``repartition`` (the default with two topics, as here: every event forwarded through the
repartition topic and read again).

All are measured in CPU seconds of their own process (all threads), alternating, for
BENCH_ROUNDS rounds (default 3); the service's start-up and idle exit are excluded by
subtracting the CPU of the same command (same mode) on an empty backlog, measured in the
same rounds. Prints events per CPU-second of each, their medians and the ratio of each mode
to the ceiling; then (BENCH_PROFILE=1, the default) one extra service run under
pyinstrument (BENCH_PROFILE_MODE, repartition by default) showing where its loop thread
spends its time.

Environment: BENCH_EVENTS (300,000), BENCH_PROFILES (60,000), BENCH_ROUNDS,
BENCH_BOOTSTRAP (a running broker; else one is started on BENCH_KAFKA_PORT, 29592),
BENCH_BEFORE (a commit whose service is measured in the same rounds, e.g. main),
BENCH_MODES (direct,repartition), BENCH_PROFILE_MODE.
Numbers, not a test: `make bench`, or `.venv/bin/python bench/bench_ceiling.py`.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import stack

EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
PROFILES = int(os.environ.get("BENCH_PROFILES", "60000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PROFILE = os.environ.get("BENCH_PROFILE", "1") == "1"
# An older commit to measure in the same rounds (before/after), e.g. BENCH_BEFORE=main.
BEFORE = os.environ.get("BENCH_BEFORE", "")
# Which mode the closing profile runs (``MODES``): repartition or direct.
PROFILE_MODE = os.environ.get("BENCH_PROFILE_MODE", "repartition")


# -- the ceiling loop (runs in its own process: `bench_ceiling.py --ceiling ...`)


def ceiling(bootstrap: str, topics: list[str], expected: int) -> dict[str, Any]:
    import uuid
    from io import BytesIO

    import fastavro
    from confluent_kafka import Consumer

    from consumer.core.decode import load_schema, strip_logical_types
    from consumer.target.wire import ESCAPE_TABLE

    schema = fastavro.parse_schema(
        strip_logical_types(load_schema(stack.REPO / "schemas" / "profile_change.avsc"))
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-ceiling-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.subscribe(topics)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    read = fastavro.schemaless_reader
    seen = 0
    started = None
    while seen < expected:
        messages = consumer.consume(10_000, 1.0)
        if started is None and messages:
            started = time.process_time()
        for m in messages:
            if m.error() is not None:
                continue
            event = read(BytesIO(m.value()), schema, None)
            profile = event["profile"]
            key = (profile["id_type"], profile["id"])
            attrs = {
                k: v
                if type(v) is str
                else ("true" if v else "false")
                if type(v) is bool
                else str(v)
                for k, v in event["attributes"].items()
                if v is not None and v != ""
            }
            row = rows.get(key)
            if row is None:
                rows[key] = attrs
            else:
                row.update(attrs)
            seen += 1
    size = 0
    for id_type in ("THIRD_PARTY_ID", "PC_ID"):
        mine = [(k[1], a) for k, a in rows.items() if k[0] == id_type]
        columns = list(dict.fromkeys(n for _, a in mine for n in a))
        lines = [",".join(["batch", *[c.translate(ESCAPE_TABLE) for c in columns]])]
        for pid, attrs in mine:
            cells = [attrs[c].translate(ESCAPE_TABLE) if c in attrs else "" for c in columns]
            lines.append(",".join([pid.translate(ESCAPE_TABLE), *cells]))
        size += len("\n".join(lines).encode("ascii"))
    cpu = time.process_time() - (started or 0.0)
    consumer.close()
    return {"events": seen, "rows": len(rows), "csv_bytes": size, "cpu_seconds": cpu}


# -- the driver


def checkout(ref: str) -> Path:
    """``ref``'s tree under .local/bench-trees/ (its service runs from there), by commit,
    so a branch that moved is extracted again; its hot path compiled if it has one."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=stack.REPO, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    where = stack.REPO / ".local" / "bench-trees" / commit
    if not where.exists():
        where.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=stack.REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    if (where / "consumer" / "compiled.py").exists() and hot_path(where) != "compiled":
        subprocess.run(
            [sys.executable, "-m", "consumer", "compiled", "build"],
            cwd=where, env={**os.environ, "PYTHONPATH": str(where)}, capture_output=True,
            check=True,
        )  # fmt: skip
    return where


def hot_path(tree: Path) -> str:
    """What ``tree``'s service runs: "compiled", or "interpreted" and why."""
    if not (tree / "consumer" / "compiled.py").exists():
        return "interpreted (no compiled build in that commit)"
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "compiled", "status"],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
    )  # fmt: skip
    status = done.stdout.strip()
    return "compiled" if done.returncode == 0 else status


def run_ceiling(bootstrap: str, topics: list[str]) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--ceiling", bootstrap, ",".join(topics[:2]), str(EVENTS)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["cpu_seconds"])


# The two ways the service runs the bench's two topics (docs/repartition.md): ``direct``
# is the path of one topic keyed by profile (PROFILE_SYNC_REPARTITION=never), ``repartition``
# the default with two topics (every event forwarded through the repartition topic).
MODES = {"direct": {"repartition": "never"}, "repartition": {}}
# Seconds without a record before the service exits (``--exit-when-idle``), per mode. The
# direct mode pauses consumption for seconds while carry-forward waits for batch
# completions; before ``run`` counted a pause as not idle, 3 s stopped it mid-backlog.
IDLE_SECONDS = {"direct": "8", "repartition": "3"}
# The modes measured in the rounds (BENCH_MODES=repartition: that one only, for more rounds).
MEASURED = [m for m in os.environ.get("BENCH_MODES", ",".join(MODES)).split(",") if m in MODES]


def run_service(
    bootstrap: str,
    topics: list[str],
    url: str,
    *wrap: str,
    tree: Path = stack.REPO,
    mode: str = "repartition",
    compiled: str = "auto",
) -> tuple[float, dict[str, Any]]:
    """CPU seconds of one ``profile-sync run --exit-when-idle`` over ``topics``, with the
    service of ``tree`` (this one, or an older checkout), in ``mode`` (``MODES``)."""
    extra = {"compiled": compiled} if compiled != "auto" else {}
    env = stack.service_env(
        bootstrap, topics, url, batch_linger_seconds="1", single_enabled="false",
        **MODES[mode], **extra,
    )  # fmt: skip
    env["PYTHONPATH"] = str(tree)
    idle = IDLE_SECONDS[mode]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, *wrap, "-m", "consumer", "run", "--summary", "--exit-when-idle", idle],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return cpu, summary


def service_rate(
    bootstrap: str, topics: list[str], empty: list[str], url: str, tree: Path, mode: str
) -> tuple[float, float, float]:
    """(events per CPU-second, CPU of the run, CPU of the same run on an empty backlog)."""
    cpu, summary = run_service(bootstrap, topics, url, tree=tree, mode=mode)
    assert summary["events_consumed"] == EVENTS, summary
    idle_cpu, idle = run_service(bootstrap, empty, url, tree=tree, mode=mode)
    assert idle["events_consumed"] == 0, idle
    return EVENTS / (cpu - idle_cpu), cpu, idle_cpu


def main() -> None:
    with stack.broker(29592) as bootstrap, stack.emulator() as url:
        topics = stack.new_topics("bench.ceiling")
        empty = stack.new_topics("bench.empty")
        stack.create_topics(bootstrap, topics + empty, 6)
        stack.produce_sample(bootstrap, topics, EVENTS, PROFILES, "--urgent-share", "0")
        print(
            f"{EVENTS:,} events over {PROFILES:,} profiles, {ROUNDS} rounds, "
            f"load average {stack.load_average()}"
        )
        trees = {"this tree": stack.REPO}
        if BEFORE:
            trees[BEFORE] = checkout(BEFORE)
        for name, tree in trees.items():
            print(f"hot path of {name}: {hot_path(tree)}")
        ceil_rates: list[float] = []
        # (tree, mode) -> ratio per round
        ratios: dict[tuple[str, str], list[float]] = {(t, m): [] for t in trees for m in MEASURED}
        rates: dict[tuple[str, str], list[float]] = {k: [] for k in ratios}
        for n in range(ROUNDS):
            ceil_cpu = run_ceiling(bootstrap, topics)
            ceil_rates.append(EVENTS / ceil_cpu)
            print(
                f"round {n + 1}: ceiling {ceil_rates[-1]:>8,.0f} ev/CPU-s ({ceil_cpu:.2f} s)   "
                f"load {stack.load_average()}"
            )
            for mode in MEASURED:
                for name, tree in trees.items():
                    rate, cpu, idle = service_rate(bootstrap, topics, empty, url, tree, mode)
                    rates[(name, mode)].append(rate)
                    ratios[(name, mode)].append(rate / ceil_rates[-1])
                    print(
                        f"  {mode:<11} {name:<10} {rate:>8,.0f} ev/CPU-s ({cpu:.2f} s - "
                        f"{idle:.2f} s start-up/idle)   ratio {rate / ceil_rates[-1]:.2f}   "
                        f"load {stack.load_average()}"
                    )
        c = statistics.median(ceil_rates) if ceil_rates else 0.0  # BENCH_ROUNDS=0: profile only
        print(f"median: ceiling {c:,.0f} events/CPU-s")
        for (name, mode), rs in rates.items() if c else ():
            s = statistics.median(rs)
            print(
                f"median: {mode:<11} {name:<10} {s:>8,.0f} events/CPU-s, ratio of medians "
                f"{s / c:.2f} (median of per-round ratios "
                f"{statistics.median(ratios[(name, mode)]):.2f})"
            )
        if PROFILE:
            out = stack.REPO / ".local" / "bench-profile.txt"
            out.parent.mkdir(exist_ok=True)
            # pyinstrument sees Python frames only: compiled functions calling one another
            # would show as one opaque call. The profile is of the same code interpreted.
            run_service(
                bootstrap, topics, url,
                "-m", "pyinstrument", "--show-all", "-r", "text", "-o", str(out),
                mode=PROFILE_MODE, compiled="off",
            )  # fmt: skip
            print(
                f"profile of the service's loop thread ({PROFILE_MODE}, pyinstrument, "
                f"interpreted: PROFILE_SYNC_COMPILED=off): {out}"
            )
            lines = out.read_text().splitlines()
            print("\n".join(lines[:60]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--ceiling":
        print(json.dumps(ceiling(sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]))))
    else:
        main()
