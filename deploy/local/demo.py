"""The main job on the local stack, end to end: ``make demo``.

Starts a local Apache Kafka (KRaft) and the Target emulator, produces a realistic POS/CRM
stream with ``profile-sync produce-sample`` (the ``ProfileChange`` contract, plus POS
``Purchase`` records and Debezium changes of the CRM customers table, read through the
example mappings of ``schemas/examples/``), runs ``profile-sync run`` with a mapping file
for all four topics until the stream is drained and committed, prints a summary, checks
Target's final state against the events, and stops everything it started.

Options come from the environment so ``make demo DEMO_EVENTS=...`` works:
DEMO_EVENTS (default 100000), DEMO_PURCHASES (20000), DEMO_CUSTOMER_CHANGES (10000),
DEMO_PROFILES (20000), DEMO_PARTITIONS (6), DEMO_KAFKA_PORT (29092),
DEMO_URGENT_SHARE (0.02).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from sampler.mapped import mapping_file_text

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".local" / "demo"
KAFKA = REPO / "deploy" / "local" / "kafka.sh"
BIN = [sys.executable, "-m", "consumer"]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def start_emulator(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the emulator
    proc = subprocess.Popen(
        [
            *BIN,
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--client",
            "acme",
            "--bulk-apply-delay",
            "0.5",
            # Target's limits as the emulator's defaults: 50 bulk-API calls a minute, the
            # last 10 statuses kept. The service budgets its calls to live within them.
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=REPO,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"the emulator did not start; see {log_path}")


def main() -> int:
    events = env_int("DEMO_EVENTS", 100_000)
    purchases = env_int("DEMO_PURCHASES", 20_000)
    customer_changes = env_int("DEMO_CUSTOMER_CHANGES", 10_000)
    profiles = env_int("DEMO_PROFILES", 20_000)
    partitions = env_int("DEMO_PARTITIONS", 6)
    port = env_int("DEMO_KAFKA_PORT", 29092)
    urgent = os.environ.get("DEMO_URGENT_SHARE", "0.02")
    STATE.mkdir(parents=True, exist_ok=True)
    bootstrap = f"127.0.0.1:{port}"
    kafka_env = {**os.environ, "KAFKA_PORT": str(port)}
    run_id = uuid.uuid4().hex[:8]
    topics = [f"pos.profile-changes.{run_id}", f"crm.profile-changes.{run_id}"]
    mapped_topics = [f"pos.purchases.{run_id}", f"crm.public.customers.{run_id}"]
    emulator = None
    try:
        say(f"starting Kafka on {bootstrap}")
        subprocess.run([str(KAFKA), "start"], env=kafka_env, check=True)
        say("starting the Target emulator")
        emulator, target_url = start_emulator(STATE / "emulator.log")
        say(f"emulator at {target_url}")

        say(
            f"producing {events:,} POS/CRM events, {purchases:,} POS purchases and "
            f"{customer_changes:,} Debezium CRM changes for {profiles:,} profiles"
        )
        subprocess.run(
            [
                *BIN,
                "produce-sample",
                "--bootstrap-servers",
                bootstrap,
                "--topic-pos",
                topics[0],
                "--topic-crm",
                topics[1],
                "--count",
                str(events),
                "--profiles",
                str(profiles),
                "--urgent-share",
                urgent,
                "--create-topics",
                str(partitions),
                "--purchases",
                str(purchases),
                "--topic-purchases",
                mapped_topics[0],
                "--customer-changes",
                str(customer_changes),
                "--topic-customers",
                mapped_topics[1],
                "--dump",
                str(STATE / "events.jsonl"),
            ],
            check=True,
            cwd=REPO,
        )
        mapping = STATE / "mapping.yaml"
        mapping.write_text(mapping_file_text(topics, *mapped_topics), encoding="utf-8")
        say(f"mapping file {mapping}: the contract and the POS and CRM examples")

        say("running the consumer until the stream is drained and committed")
        env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROFILE_SYNC_"))
            },
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": f"profile-sync-demo-{run_id}",
            "PROFILE_SYNC_TOPICS": ",".join(topics + mapped_topics),
            "PROFILE_SYNC_MAPPING_FILE": str(mapping),
            "PROFILE_SYNC_DLQ_TOPIC": f"profile-sync.dlq.{run_id}",
            "PROFILE_SYNC_TARGET_URL": target_url,
            "PROFILE_SYNC_TARGET_CLIENT": "acme",
            "PROFILE_SYNC_BATCH_LINGER_SECONDS": "2",
            "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
            "PROFILE_SYNC_HTTP_PORT": "0",
            "PROFILE_SYNC_LOG_FORMAT": "json",
            "PROFILE_SYNC_STATUS_POLL_INITIAL_SECONDS": "0.5",
            # The emulator starts with no visitors for the v1 default to update: v2 creates
            # the sample's pcId profiles (a set-up without ECID; see docs/operations.md).
            "PROFILE_SYNC_PCID_BULK_VERSION": "v2",
        }
        log_path = STATE / "consumer.log"
        with open(log_path, "wb") as log:
            done = subprocess.run(
                [*BIN, "run", "--exit-when-idle", "3", "--summary"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                check=False,
            )
        if done.returncode != 0:
            print(log_path.read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"the consumer exited with {done.returncode}; log: {log_path}")
        summary = run_summary(log_path)
        stats = wait_until_applied(target_url)
        report(summary, stats)
        return verify(target_url, STATE / "events.jsonl")
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(10)
        subprocess.run([str(KAFKA), "stop"], env=kafka_env, check=False)


def run_summary(log_path: Path) -> dict[str, object]:
    """The JSON line ``--summary`` prints at exit (the one line that is not a log)."""
    for line in reversed(log_path.read_text().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            if "event" not in data and "events_consumed" in data:
                return dict(data)
    raise SystemExit(f"the consumer printed no summary; log: {log_path}")


def wait_until_applied(target_url: str) -> dict[str, object]:
    """Emulator stats once every accepted batch and single update has been applied."""
    deadline = time.monotonic() + 60
    while True:
        stats: dict[str, object] = httpx.get(f"{target_url}/_emulator/stats", timeout=10).json()
        single = stats.get("single_updates")
        pending_single = single.get("pending", 0) if isinstance(single, dict) else 0
        if (stats.get("pending_batches") == 0 and pending_single == 0) or (
            time.monotonic() > deadline
        ):
            return stats
        time.sleep(0.2)


def verify(target_url: str, dump: Path) -> int:
    """Compare what Target holds with the newest-value fold of every event produced."""
    from sampler.events import expected_profiles
    from sampler.mapped import expected_mapped_profiles

    header = {"THIRD_PARTY_ID": "thirdPartyId", "PC_ID": "pcId"}
    lines = dump.read_text(encoding="utf-8").splitlines()
    contract = [line for line in lines if line.strip() and "event" in json.loads(line)]
    expected = {(header[t], i): attrs for (t, i), attrs in expected_profiles(contract).items()}
    # The mapped attributes (lastBasket*, crm*) have names of their own: merge per profile.
    for (t, i), attrs in expected_mapped_profiles(lines).items():
        expected.setdefault((header[t], i), {}).update(attrs)
    stored = httpx.get(f"{target_url}/_emulator/profiles", timeout=60).json()
    actual = {
        (id_type, pid): attrs for id_type, table in stored.items() for pid, attrs in table.items()
    }
    wrong = [k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k)]
    if wrong:
        print(f"  Target matches the events  NO: {len(wrong):,} profiles differ, e.g. {wrong[:3]}")
        return 1
    print(f"  Target matches the events  yes ({len(expected):,} profiles, newest value each)")
    return 0


def report(summary: dict[str, object], stats: dict[str, object]) -> None:
    def num(key: str) -> float:
        value = summary.get(key, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    batches = num("batches_accepted")
    rows = num("rows_accepted")
    calls = sum(
        float(stats.get(k, 0) or 0)  # type: ignore[arg-type]
        for k in ("bulk_requests", "single_requests", "status_requests")
    )
    consumed = num("events_consumed")
    print()
    print("target-profile-sync demo summary")
    print(f"  events consumed           {consumed:>12,.0f}")
    print(f"  profiles updated          {stats.get('profiles', 'n/a')!s:>12}")
    print(f"  bulk batches accepted     {batches:>12,.0f}")
    print(f"  rows per batch (mean)     {rows / batches if batches else 0:>12,.1f}")
    print(f"  urgent events queued      {num('single_updates_queued'):>12,.0f}")
    single_calls = float(stats.get("single_requests", 0) or 0)  # type: ignore[arg-type]
    print(f"  single updates sent       {single_calls:>12,.0f}  (the rest rode their bulk batch)")
    print(f"  dead letters              {num('dead_letters'):>12,.0f}")
    per_event = calls / consumed if consumed else 0.0
    print(f"  HTTP calls to Target      {calls:>12,.0f}  ({per_event:.4f} per event)")
    print(f"  elapsed                   {num('elapsed_seconds'):>11,.1f}s")
    print(f"  throughput                {num('events_per_second'):>12,.0f} events/s")


if __name__ == "__main__":
    raise SystemExit(main())
