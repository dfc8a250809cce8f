"""Urgent-path latency under background load: 0, 2,000 and 10,000 events/s.

For each background rate (BENCH_URGENT_BACKGROUND, default "0,2000,10000") a fresh
``profile-sync run`` (10 s linger, BENCH_URGENT_LINGER) consumes the urgent probe topic,
into which a background ``produce-sample --rate R`` also writes NORMAL events (50,000
profiles), keyed by profile like the probes: one topic keyed by profile, so the service
runs in the direct mode. BENCH_URGENT_TOPICS=separate puts the background in POS/CRM
topics of their own instead: three topics, so the repartition mode (docs/repartition.md).
The probe profiles are created through bulk first (the single-update API never creates a
profile); then BENCH_URGENT_EVENTS (300) URGENT events are produced at BENCH_URGENT_RATE
(50/s) while the background runs, once the service consumes it at its rate (a steady
stream, not a start-up catch-up). The background producer runs at niceness
BENCH_URGENT_NICE (10): upstream producers run elsewhere in production. The emulator runs
in a process of its own, Target being remote. Printed per rate:

- the service's own ``profile_sync_single_update_delay_seconds`` histogram (occurred_at to
  Target accepting the single update): share within each bucket bound, p50/p99 estimated;
- the emulator's side: produce -> single update received (p50, p90, p99, max).

Environment: BENCH_BOOTSTRAP (a running broker; else one is started on BENCH_KAFKA_PORT,
29192); BENCH_ENV="NAME=value,..." adds settings to the service; BENCH_BEFORE=REF
measures an older commit's service right before this one at each rate, BENCH_ROUNDS times
(default 1).
Numbers, not a test: `make bench`, or `.venv/bin/python bench/bench_urgent.py`.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import stack
from bench_ceiling import checkout
from bench_emulator import cpu_seconds, start_emulator
from confluent_kafka import Consumer, Producer

from emulator.client import EmulatorControl

EVENTS = int(os.environ.get("BENCH_URGENT_EVENTS", "300"))
RATE = float(os.environ.get("BENCH_URGENT_RATE", "50"))  # urgent events per second
BACKGROUND = [int(r) for r in os.environ.get("BENCH_URGENT_BACKGROUND", "0,2000,10000").split(",")]
HISTOGRAM = "profile_sync_single_update_delay_seconds"
# An older commit measured right before this tree at each rate (before/after), and rounds.
BEFORE = os.environ.get("BENCH_BEFORE", "")
SEPARATE = os.environ.get("BENCH_URGENT_TOPICS", "same") == "separate"
# Niceness of the background producer: in production the producers run elsewhere; here
# they share 2 cores with the service, and a Python producer at 10,000 events/s takes more
# CPU than the service. 0 lets it compete on equal terms.
NICE = int(os.environ.get("BENCH_URGENT_NICE", "10"))
LINGER = os.environ.get("BENCH_URGENT_LINGER", "10")  # the service's bulk linger, seconds
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
LOG = stack.REPO / ".local" / "bench-urgent-service.log"  # the services' stderr


def event(pid: str, attrs: dict[str, Any], priority: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "source": "CRM",
        "occurred_at": int(time.time() * 1000),
        "profile": {"id_type": "THIRD_PARTY_ID", "id": pid},
        "priority": priority,
        "attributes": attrs,
    }


def histogram(port: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the service's urgent-delay histogram."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = []
    for m in re.finditer(rf'^{HISTOGRAM}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M):
        out.append((float(m.group(1)), float(m.group(2))))
    return out


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style histogram_quantile (linear within the bucket)."""
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            share = (rank - prev_count) / (count - prev_count) if count > prev_count else 1.0
            return prev_bound + (bound - prev_bound) * share
        prev_bound, prev_count = bound, count
    return prev_bound


def append_times(bootstrap: str, topic: str, probes: set[str]) -> dict[str, float]:
    """When the broker appended each probe's URGENT event, by profile: a probe's second
    record (the first created its profile through bulk; one key, one partition, in order)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-urgent-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: dict[str, int] = {}
    out: dict[str, float] = {}
    deadline = time.monotonic() + 60
    try:
        while len(out) < len(probes) and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                key = m.key() if m.error() is None else None
                pid = key.decode() if key is not None else ""
                if pid in probes:
                    seen[pid] = seen.get(pid, 0) + 1
                    if seen[pid] == 2:
                        out[pid] = m.timestamp()[1] / 1000
    finally:
        consumer.close()
    return out


def spread(values: list[float]) -> str:
    if not values:
        return "no sample"
    v = sorted(values)
    at = {q: v[min(len(v) - 1, int(len(v) * q / 100))] for q in (50, 90, 99)}
    return f"p50 {at[50]:.1f} ms   p90 {at[90]:.1f} ms   p99 {at[99]:.1f} ms   max {v[-1]:.1f} ms"


def steady(port: str, rate: int, timeout: float = 60.0) -> None:
    """Wait until the service consumes the background at its rate, not faster (catching up
    with a start-up backlog): two seconds in a row within 20% of ``rate``."""
    started = time.monotonic()
    calm = 0
    last = stack.scrape(port, "profile_sync_events_consumed_total")
    while calm < 2 and time.monotonic() - started < timeout:
        time.sleep(1.0)  # a pace to measure over, not a wait for a condition
        now = stack.scrape(port, "profile_sync_events_consumed_total")
        calm = calm + 1 if 0.8 * rate <= now - last <= 1.2 * rate else 0
        last = now
    print(f"(steady after {time.monotonic() - started:.0f} s)", end=" ")


def one_rate(
    bootstrap: str, url: str, background: int, schema: Any, tree: Path = stack.REPO
) -> None:
    topic = f"bench.urgent.{uuid.uuid4().hex[:6]}"
    bg = stack.new_topics("bench.urgent-bg")
    # The broker stamps each record with the time it appended it: the probes' delays split
    # into before the broker (producer, broker) and after (service, Target).
    stack.create_topics(bootstrap, [topic], 3, {"message.timestamp.type": "LogAppendTime"})
    stack.create_topics(bootstrap, bg, 3)
    if not SEPARATE:
        bg[:2] = [topic, topic]  # the background's POS and CRM events go to the probes' topic
    control = EmulatorControl(url, timeout=60)  # the profile dump grows with the background
    env = stack.service_env(bootstrap, bg, url, batch_linger_seconds=LINGER)
    env["PROFILE_SYNC_TOPICS"] = ",".join(dict.fromkeys([topic, *bg[:2]]))
    env["PYTHONPATH"] = str(tree)
    # BENCH_ENV="NAME=value,...": settings to try, for both trees.
    env.update(kv.split("=", 1) for kv in os.environ.get("BENCH_ENV", "").split(",") if kv)
    port = env["PROFILE_SYNC_HTTP_PORT"]
    service = subprocess.Popen(
        [sys.executable, "-m", "consumer", "run"],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=LOG.open("ab"),
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    background_proc = None
    try:

        def send(e: dict[str, Any]) -> None:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, e)
            producer.produce(topic, key=e["profile"]["id"].encode(), value=buf.getvalue())
            producer.poll(0)

        run_id = uuid.uuid4().hex[:4]
        probe_prefix = f"probe-{run_id}-"
        profiles = [f"{probe_prefix}{i:05d}" for i in range(EVENTS)]
        for pid in profiles:
            send(event(pid, {"tier": "silver"}, "NORMAL"))
        producer.flush(30)

        def created() -> bool:
            held = control.profiles(prefix=probe_prefix).get("thirdPartyId", {})
            return all(p in held for p in profiles)

        try:
            control.wait_until(created, 120, 0.5)
        except TimeoutError:
            print("the probe profiles were not created through bulk in time")
            raise
        seconds = EVENTS / RATE + 5
        if background:
            background_proc = stack.produce_sample(
                bootstrap, bg, int(background * seconds), 50_000,
                "--rate", str(background), "--urgent-share", "0", wait=False, nice=NICE,
            )  # fmt: skip
            steady(port, background)  # the probes measure a steady stream, not a catch-up
        consumed_before = stack.scrape(port, "profile_sync_events_consumed_total")
        cpu_before = cpu_seconds(service.pid)
        decided_before = stack.scrape(port, "profile_sync_single_updates_total")
        sent_at: dict[str, float] = {}
        started = time.monotonic()
        seen: dict[str, float] = {}

        def received() -> dict[str, float]:
            # Accumulated over reads: the bulk batch (10 s linger) later rewrites a probe's
            # source, so a probe is recorded while its single update is what Target shows.
            # Only the probes are read: a dump of every profile holds the emulator's store
            # (and so the single calls in flight) for as long as it takes.
            held = control.profiles(details=True, prefix=probe_prefix).get("thirdPartyId", {})
            for pid in profiles:
                probe = held.get(pid, {}).get("probe")
                if probe is not None and str(probe.get("source", "")).startswith("single"):
                    seen.setdefault(pid, datetime.fromisoformat(probe["modifiedAt"]).timestamp())
            return seen

        for n, pid in enumerate(profiles):
            while time.monotonic() < started + n / RATE:
                time.sleep(0.001)
            sent_at[pid] = time.time()
            send(event(pid, {"tier": "gold", "probe": n}, "URGENT"))
            if n % int(RATE) == int(RATE) - 1:
                received()  # once a second, before a bulk batch rewrites the probes
        producer.flush(30)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(service.pid) - cpu_before

        def decided() -> float:  # probes whose single call ended (sent, failed, skipped)
            return stack.scrape(port, "profile_sync_single_updates_total") - decided_before

        # Every probe's single call ended, then the emulator is read once more: a probe
        # skipped, or rewritten by its bulk batch between two reads, is left out.
        control.wait_until(lambda: decided() >= EVENTS, 120, 0.2)
        got = received()
        outcomes = dict(
            re.findall(
                r'^profile_sync_single_updates_total\{outcome="(\w+)"\} (\S+)$',
                stack.metrics_text(port),
                re.M,
            )
        )
        if len(got) < EVENTS:
            print(f"({len(got)} of {EVENTS} single updates seen in Target; outcomes {outcomes})")
        consumed = stack.scrape(port, "profile_sync_events_consumed_total") - consumed_before
        delays = sorted((got[p] - sent_at[p]) * 1000 for p in profiles if p in got)
        pct = {q: delays[min(len(delays) - 1, int(len(delays) * q / 100))] for q in (50, 90, 99)}
        appended = append_times(bootstrap, topic, set(profiles))
        to_broker = [(appended[p] - sent_at[p]) * 1000 for p in profiles if p in appended]
        after = [(got[p] - appended[p]) * 1000 for p in profiles if p in got and p in appended]
        buckets = histogram(port)
        p50, p99 = quantile(buckets, 0.5) * 1000, quantile(buckets, 0.99) * 1000
        total = buckets[-1][1]
        within = "  ".join(
            f"<={b * 1000:g}ms {100 * c / total:.0f}%" for b, c in buckets if b <= 1.0
        )
        print(
            f"background {background:>6,}/s (consumed {consumed / elapsed:,.0f} events/s while "
            f"probing; service {cpu / elapsed:.2f} CPU-s/s), load {stack.load_average()}\n"
            f"  service histogram ({total:.0f} single updates): p50 ~"
            f"{p50:.1f} ms  p99 ~{p99:.1f} ms\n"
            f"    {within}\n"
            f"  emulator side, produce -> single update: p50 {pct[50]:.1f} ms   "
            f"p90 {pct[90]:.1f} ms   p99 {pct[99]:.1f} ms   max {delays[-1]:.1f} ms\n"
            f"    of which produce -> appended by the broker: {spread(to_broker)}\n"
            f"    and appended -> single update (service, Target): {spread(after)}"
        )
    finally:
        if background_proc is not None:
            background_proc.terminate()
            background_proc.wait(30)
        service.terminate()
        service.wait(60)


def main() -> None:
    schema = fastavro.parse_schema(
        json.loads((stack.REPO / "schemas" / "profile_change.avsc").read_text())
    )
    # The emulator in a process of its own, as Target is remote: in this process its HTTP
    # threads would share the interpreter with the probe producer's pacing loop.
    emulator, url = start_emulator()
    try:
        with stack.broker(29192) as bootstrap:
            run(bootstrap, url, schema)
    finally:
        emulator.terminate()
        emulator.wait(30)


def run(bootstrap: str, url: str, schema: Any) -> None:
    mode = "POS/CRM topics of their own: repartition mode" if SEPARATE else "one topic"
    if not SEPARATE:
        mode += " keyed by profile: direct mode"
    print(
        f"urgent path: {EVENTS} URGENT events at {RATE:g}/s, bulk linger {LINGER} s; {mode}; "
        f"background producer at niceness {NICE} (BENCH_URGENT_NICE)"
    )
    before = checkout(BEFORE) if BEFORE else None
    for background in BACKGROUND:
        for _ in range(ROUNDS):
            if before is not None:
                print(f"[{BEFORE}]", end=" ")
                one_rate(bootstrap, url, background, schema, before)
                print("[this tree]", end=" ")
            one_rate(bootstrap, url, background, schema)


if __name__ == "__main__":
    main()
